"""The gateway's refusals for people: translated by their machine-readable reason.

The gateway's messages travel over gRPC in English with a reason (``grant.purpose``, ``matter.unknown``
…). The command line shows the reason's text in the active language and keeps the gateway's own words
after it, which carry the details (caller, matter, limits); a reason without a text here is shown as the
gateway worded it. The SDK's explanations of failed TLS handshakes are translated the same way.
"""

from __future__ import annotations

from mustcheck import MustCheckError

from ..i18n import N_, _, active_language

REASON_TEXT = {
    "credentials.missing": N_("no credentials were sent"),
    "credentials.mismatch": N_("the client certificate and the token do not belong together"),
    "token.unknown": N_("the token is not known to this gateway"),
    "token.revoked": N_("the token was revoked"),
    "token.expired": N_("the token has expired"),
    "caller.unknown": N_("the caller does not exist"),
    "caller.disabled": N_("the caller is disabled"),
    "certificate.unknown": N_("the client certificate is not mapped to a caller"),
    "grant.missing": N_("the caller has no grant"),
    "grant.expired": N_("the caller's grant is not valid today"),
    "grant.matter": N_("the caller's grant does not cover this matter"),
    "grant.subject_kind": N_("the caller's grant does not cover this kind of subject"),
    "grant.purpose": N_("every check must state its purpose"),
    "grant.authorization_ref": N_("person lookups need an authorisation reference (98号 §4(1))"),
    "rate_limited": N_("the caller is over its rate limit"),
    "quota.persons": N_("the caller has used its daily quota of person lookups"),
    "matter.unknown": N_("unknown matter"),
    "matter.missing": N_("a matter code is required"),
    "store.unavailable": N_("the list store is unavailable"),
    "role.admin": N_("the caller does not hold the admin role"),
    "role.auditor": N_("the caller does not hold the auditor role"),
    "role.reveal": N_("the caller does not hold the reveal role"),
    "audit.limit": N_("the number of records asked for is out of range"),
    "caller.department": N_("unknown department"),
    "caller.exists": N_("the caller already exists"),
}
# What the command line asks for, after the reason's text.
REASON_HINT = {
    "credentials.missing": N_("give --token-file FILE, or set MUSTCHECK_TOKEN_FILE to the token file's path"),
    "grant.purpose": N_("give --purpose TEXT"),
    "grant.authorization_ref": N_("give --authorization-ref REF"),
}
# The SDK's words for a failed TLS handshake (sdk/mustcheck/_errors.py, explain_transport).
TRANSPORT_TEXT = (
    N_("TLS failed: the gateway does not speak TLS on this port (it listens in plaintext)"),
    N_(
        "TLS failed: this client refused the gateway's certificate — it is not signed by the CA given "
        "(ca= / --ca), or it names another host than the one dialled (server_name= overrides it)"
    ),
    N_(
        "TLS failed: the gateway closed the connection during the handshake — it requires a client "
        "certificate (mutual TLS) and none was given (cert= and key= / --cert and --key)"
    ),
    N_(
        "TLS failed: the gateway closed the connection during the handshake — it refused this client's "
        "certificate (not signed by a CA the gateway trusts, or expired)"
    ),
    N_("the gateway closed the connection at once: if it uses TLS, connect with its CA (ca= / --ca)"),
)


def explained(error: MustCheckError) -> str:
    """The refusal in the active language, with the option that answers it and the gateway's words."""
    hint = REASON_HINT.get(error.reason)
    if active_language() == "en" or error.reason not in REASON_TEXT:
        message = _transport(error.message)
        return f"{message} — {_(hint)}" if hint else message
    text = _(REASON_TEXT[error.reason])
    if hint:
        text = f"{text} — {_(hint)}"
    return _("{text} (the gateway said: {message})").format(text=text, message=error.message)


def _transport(message: str) -> str:
    for words in TRANSPORT_TEXT:
        if message.startswith(words):
            return _(words) + message[len(words) :]
    return message


SUBJECT_RULE_TEXT = {
    "uscc.": N_("not a valid unified social credit code"),
    "id.": N_("not a valid citizen identity number"),
    "subject.": N_("not a valid subject identifier"),
}


def subject_error(error: MustCheckError) -> str:
    """An invalid-input refusal: the identifier rule it broke, in the active language."""
    if active_language() == "en":
        return error.message
    for prefix, text in SUBJECT_RULE_TEXT.items():
        if error.reason.startswith(prefix):
            return _("{text} [{rule}] (the gateway said: {message})").format(
                text=_(text), rule=error.reason, message=error.message
            )
    return explained(error)
