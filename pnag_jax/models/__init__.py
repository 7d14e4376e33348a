"""Model parts: graph encoder, multi-scale quantizer (MSQ), linear decoder, VQ-VAE."""
