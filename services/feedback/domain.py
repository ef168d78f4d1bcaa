"""Opinions (意见建议), answers, feedback (反馈) and evaluation (评议).

The opinion lifecycle is built in its own issue; today the feedback service
holds the trace (全过程留痕), a read model of every service's events.
"""
