"""Model code: checkpoint loading and the Llama-family decoder written for the paged KV cache."""
