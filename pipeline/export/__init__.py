"""Scheduled exports: saved searches -> windows -> files in outbox/, with job state."""
