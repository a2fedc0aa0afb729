"""Alerts and the daily digest: conditions worth telling ops staff about, sent through Apprise
targets (docs/alerts.md). Importing this package loads no Apprise: that happens when a
notifier is built for configured targets."""
