"""Live backend: drive a real vLLM engine under ExFairS policies."""
