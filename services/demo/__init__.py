"""Demo data: the shop data set the acceptance cases and `aietl demo` run against.

``services.demo.shopdata`` writes the files; ``services.demo.load`` loads customers/orders into PostgreSQL.
Nothing is imported here so that importing the package stays free of side effects and of psycopg.
"""
