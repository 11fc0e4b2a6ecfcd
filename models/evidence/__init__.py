"""Evidence: the durosim-trace/1 format, duroxide's logs read into it, calibration from them, and
validation of the model against real traces with its report."""
