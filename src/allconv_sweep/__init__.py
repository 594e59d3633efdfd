"""allconv_sweep: the reference reproduction of "Striving for Simplicity: The All Convolutional Net"."""

__version__ = "0.1.0"
