"""What a person reads afterwards: the receipt and the reject files."""
