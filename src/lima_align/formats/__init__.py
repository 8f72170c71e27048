"""Conversation files in the formats people have: row formats and containers (:mod:`.rows`), Hugging Face
``datasets`` folders and the Hub (:mod:`.hf`)."""
