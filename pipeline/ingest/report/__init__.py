"""What a person reads afterwards: the receipt and the reject files, and where they go."""
