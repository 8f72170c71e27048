"""The human annotation web app: studies in SQLite, a FastAPI app of server-rendered pages, export to judgments.

``db`` (the store), ``study`` (items, annotators, label rules), ``pages`` (what a page shows), ``app`` (routes,
auth, CSP), ``export`` (judgments rows and rater agreement).
"""
