"""The network: the builder (nets), the LightningModule (module) and the paper's lr schedule."""
