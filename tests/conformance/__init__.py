"""The conformance corpus: the real kube-apiserver's answers, recorded, replayed against the fake.

See README.md in this directory.
"""
