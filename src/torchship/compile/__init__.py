"""Compile backends. Each turns the fetched Hugging Face model into what the handler loads."""
