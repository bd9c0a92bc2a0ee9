"""Transfer strategies, registered by name: `strategy: linear_probe | finetune | lora | ia3`, and the zero-shot
classifier that trains nothing.

Nothing is imported here: `strategies.factory` builds a strategy (and imports them all: torch, PEFT, timm), while
`strategies.zero_shot` alone serves `hf-transfer rank --zero-shot` without loading the training loop.
"""
