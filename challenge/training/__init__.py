"""Training: the network and its file (net), the LightningModule (module), the one recipe (recipe)."""
