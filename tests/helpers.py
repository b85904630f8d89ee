"""Small test doubles shared by several test modules."""


class StopAt:
    """A progress bar that kills a training run after ``n`` steps (as an interruption would)."""

    def __init__(self, n):
        self.n = n

    def __call__(self, total, done):
        self.done = done
        return self

    def update(self, k):
        self.done += k
        if self.done >= self.n:
            raise KeyboardInterrupt

    def set_postfix(self, **kw):
        pass

    def close(self):
        pass
