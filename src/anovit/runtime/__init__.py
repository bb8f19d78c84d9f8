"""Where and how tensors run: device choice and seeding, CPU precision (bf16 probe), torch.distributed."""
