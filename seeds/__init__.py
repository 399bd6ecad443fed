"""The five sample articles, shipped inside the wheel as wirewash's default input (see README.md here)."""
