"""A sweep read back: the paper as data, tables, figures, the stability map, trackers (W&B, TensorBoard), the report."""
