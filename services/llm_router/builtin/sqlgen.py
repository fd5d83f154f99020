def generate_sql(*a, **k): raise NotImplementedError
