"""SAE architectures, one module per family, each thin over a sae-lens training SAE class."""
