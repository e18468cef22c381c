"""What the tests share: the real pipeline driven for tests, fault injection, time helpers."""
