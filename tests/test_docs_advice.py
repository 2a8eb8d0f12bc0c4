"""What the security advice of the documentation must say (red team findings A1 and 17).

The pages are run by tests/test_docs.py; these check the advice that no run can check: that
the ``serve`` recipe does not send the write key in cleartext over the network, and that
secrets are given through the environment rather than on a command line others can read.
"""

from __future__ import annotations

from samples import ROOT, blocks

DOCS = ROOT / "docs"


def test_the_serve_recipe_binds_locally_behind_tls_and_points_sources_at_https() -> None:
    page = (DOCS / "segment-and-serve.md").read_text()
    [recipe] = [b.body for b in blocks(DOCS / "segment-and-serve.md")
                if "serve --host" in b.body]
    assert "--host 127.0.0.1" in recipe
    assert "0.0.0.0" not in page
    assert "http://your-host" not in page
    assert 'analytics.host = "https://' in page
    assert "reverse proxy" in page
    assert "TLS" in page


def test_security_recommends_the_environment_over_secret_flags_and_says_who_can_read_files(
) -> None:
    page = (DOCS / "security.md").read_text()
    assert "/proc/<pid>/cmdline" in page
    for flag in ("--api-secret", "--write-key"):
        assert flag in page
    assert "TLS" in page  # serve's write key travels in every request
    for mode in ("0600", "0700"):
        assert mode in page
    assert "SAILTHRU_API_TIMEOUT" in page
