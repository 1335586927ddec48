"""agent_sft layer."""
