"""Alarm dispatch: the responsibility model, Alertmanager's configuration from it, the alarm
desk (list, acknowledge) and the escalation step, all over Alertmanager's v2 API."""
