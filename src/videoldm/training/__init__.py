"""Training: one trainer on accelerate, three stages (autoencoder, image, temporal)."""
