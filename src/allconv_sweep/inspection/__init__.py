"""Looking into a trained network: attribution (backprop, deconvnet, guided backprop), visualize, evaluate."""
