"""sft layer."""
