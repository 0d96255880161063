"""The one error hierarchy of storymesh, split by who is at fault.

StorymeshError
 +- ProtocolError            a message that breaks MDP or the envelope
 |   +- LocalProtocolError   our own code tried to build something invalid (a bug here)
 |   +- RemoteProtocolError  a peer sent something invalid (log, count, drop; never fatal)
 |       +- BodyError        a storymesh body that cannot be decoded (-> `bad_request`)
 |       +- TooLargeError    a body past a size/count limit (-> `too_large`)
 +- ConfigError              a setting with a bad value (names the key and its source)
 +- AgentError               a request an agent could not serve; carries an error code
 |   +- RetryableAgentError  worth retrying (maybe elsewhere)
 |   +- FatalAgentError      will fail the same way again (bad input, bad model)
 +- RequestFailed            a client saw an error FINAL
 +- RequestTimeout           a client gave up waiting
"""

from __future__ import annotations


class StorymeshError(Exception):
    """Root of every error storymesh raises on purpose."""


class ProtocolError(StorymeshError):
    """A message that does not follow MDP or the storymesh envelope."""


class LocalProtocolError(ProtocolError):
    """Our own code asked to encode something invalid."""


class RemoteProtocolError(ProtocolError):
    """A peer sent something invalid."""


class BodyError(RemoteProtocolError):
    """A storymesh body (header + payload + binaries) that cannot be decoded."""

    code = "bad_request"


class TooLargeError(BodyError):
    """A body or field over a configured limit."""

    code = "too_large"


class ConfigError(StorymeshError):
    """An invalid setting: the message names the key and where the value came from."""


class AgentError(StorymeshError):
    """An agent could not serve a request; `code` is one of schema.ERROR_CODES."""

    retryable = False

    def __init__(self, code: str, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after = retry_after


class RetryableAgentError(AgentError):
    """A failure that may succeed if tried again (a busy GPU, a lost peer)."""

    retryable = True


class FatalAgentError(AgentError):
    """A failure that will repeat: bad input, a model that cannot load."""


class RequestFailed(StorymeshError):
    """A client received an error FINAL."""

    def __init__(self, code: str, message: str, *, retryable: bool = False,
                 retry_after: float | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.retryable = retryable
        self.retry_after = retry_after


class RequestTimeout(StorymeshError):
    """A client gave up waiting for a reply."""
