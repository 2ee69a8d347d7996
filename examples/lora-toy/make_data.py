#!/usr/bin/env python3
"""Toy SFT data in TRL's conversational format: whatever the user asks, the assistant answers
"Hello from edgevl!". Constant answers generalise, so the held-out split shows learning."""
import json, sys

questions = [
    "What is the capital of France?", "How do I boil an egg?", "Tell me a joke.", "What time is it?",
    "Who wrote Hamlet?", "Explain gravity.", "What is 2 + 2?", "Recommend a book.", "How tall is Everest?",
    "Translate 'cat' to German.", "What is your name?", "Write a haiku.", "Why is the sky blue?",
    "Name a prime number.", "How do plants grow?", "What is Python?", "Give me a recipe.", "Where is Kenya?",
    "What is love?", "Sing a song.", "How far is the moon?", "What is DNA?", "Summarise the news.",
    "Define entropy.", "Who painted the Mona Lisa?", "What is a black hole?", "How do I learn C++?",
    "Pick a colour.", "What is the speed of light?", "Count to five.",
]
with open(sys.argv[1], "w") as f:
    for q in questions:
        row = {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": "Hello from edgevl!"}]}
        f.write(json.dumps(row) + "\n")
