"""The mail bot: the door through which clients ask for their invoices by email.

It accepts mail over SMTP or LMTP (:mod:`bot.listener`) into the durable spool
(:mod:`permalink.spool`), turns each request into a reply, and sends replies through the
configured relay (:mod:`permalink.relay`). :mod:`bot.capture` is the local stand-in relay used
by the demo and the tests. The bot imports the core, never the web door.
"""
