"""Sessions: consultation sessions (协商活动), reports (协商报告) and leaders' instructions (批示).

The aggregates arrive with this service's own issue.
"""
