"""The networks: SS-VAE, SC-VAE, the image encoder and the flow transformer shared by the three stages."""
