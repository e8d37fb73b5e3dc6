"""The course report's own figures (../shared/seed, chapter III), shown beside ours. No TensorFlow."""

# Test accuracy the report states for its models (model 2 "around 70%").
REPORT_ACCURACY = {"base": 0.64, "dropout": 0.70, "augmented": 0.90}
