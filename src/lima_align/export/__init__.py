"""Release a tuned checkpoint: a folder people can share and run anywhere (safetensors, tokenizer with our chat
template, generation config stopping at EOT, a model card), a GGUF file with an Ollama Modelfile, a push to the Hub."""
