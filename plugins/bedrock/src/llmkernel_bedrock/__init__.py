"""AWS Bedrock (Converse API) provider for llmkernel."""
