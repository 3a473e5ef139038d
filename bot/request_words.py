"""The words and phrases a request is read by, in each supported language.

Every entry is a regular-expression alternation matched against lower-cased text with
word boundaries around it (see :mod:`bot.intent`). Lists are per language so that each can
be read and extended by someone who speaks it; a phrase is written out whole rather than
assembled, so that what is recognised is what is written here.

- ``INVOICE``: the nouns an invoice number may follow ("invoice 1234", "Rechnung 1234").
- ``NUMBER_LABEL``: the words between the noun and the number ("no.", "Nr.", "n°", "rhif").
- ``ALL``: asking for every invoice; ``UNPAID``: for what is still owed; ``STATEMENT``: for a
  statement of account; ``OTHERS``: "the rest", which turns "invoice 1234 and all the
  others" into a request for all of them.
- ``ASK``: the verbs of asking ("send", "schicken", "anfon"); with an invoice noun they make
  a plain request for "my invoices".
- ``POLITE``: "please" and its kin, which make "all, please" a request without a verb.
- ``IDIOMS``: everyday phrases that carry one of the words above without asking for
  anything ("all the best", "due to", "bonjour à tous", "pob hwyl", "alles Gute").
"""

from __future__ import annotations

INVOICE = [
    r"invoices?|inv|bills?",
    r"h?anfoneb(?:au)?|bil|biliau",
    r"factures?|fact",
    r"rechnung(?:en)?|rechnungsnummer(?:n)?|rechnungsnr|re-nr|rg-nr",
    r"facturas?",
    r"factuur|facturen|factuurnummers?|factuurnr|nota's|nota",
]

NUMBER_LABEL = [
    r"nos?\.|nr\.?|nrs\.?|num\.?|numbers?|n°|nº|no°|núm\.?|número|números|numéro|numéros",
    r"nummer|nummers|rhif|ref\.?|reference",
]

ALL = [
    # English
    r"all\b(?:\s+[\w']+){0,3}?\s+(?:invoices|bills|ones|of them|of it|copies|documents|paperwork)"
    r"|all of (?:them|it|those|these)|them all|(?:send|resend|want|need|have) (?:us |me )?all"
    r"|all,? please|all please|everything|every (?:single )?(?:invoice|bill|one)"
    r"|(?:full|complete|entire|whole) (?:invoice )?(?:history|list|set|lot)|the (?:whole )?lot"
    r"|all (?:the )?(?:others|rest)|(?:yes|yep),? all|all invoices",
    # Welsh
    r"(?:yr|ein|eich|fy|y) holl h?anfonebau|holl h?anfonebau|pob h?anfoneb|bob h?anfoneb"
    r"|i gyd|y cyfan|popeth|bopeth|y cwbl",
    # French
    r"(?:toutes|tous) (?:les|nos|mes|vos)? ?(?:factures|documents|copies)|toutes|tous"
    r"|l'ensemble (?:des|de nos|de mes) factures|l'historique complet|la totalité|tout envoyer"
    r"|envoyer tout|renvoyer tout",
    # German
    r"alle(?:n)?(?: \w+)? rechnungen|sämtliche(?:n)? rechnungen|alle|alles|sämtliche"
    r"|(?:die )?komplette(?:n)? rechnungen|gesamte(?:n)? rechnungen",
    # Spanish
    r"(?:todas|todos) (?:las|los|nuestras|mis|sus)? ?(?:facturas|documentos|copias)|todas"
    r"|todos|todo|el historial completo",
    # Dutch
    r"alle(?: \w+)? facturen|allemaal|alles|alle|volledige? (?:historie|lijst)",
]

UNPAID = [
    # English
    r"unpaid|outstanding|overdue|arrears|balance|owe|owed|owing|payable|in debt"
    r"|(?:haven't|have not|hasn't|has not|we've not|we've yet to|not yet|not|never) (?:yet )?"
    r"(?:been )?(?:paid|settled)(?: for)?|yet to (?:be )?(?:paid|pay|settle)"
    r"|(?:left|still|need|have|has|got) to (?:pay|be paid|settle)|to be paid"
    r"|still (?:open|due|pending)|(?:what's|what is|anything|everything|all) (?:still )?open"
    r"|open (?:invoices|items|ones|balance)|due|remaining|not settled|unsettled"
    r"|(?:awaiting|pending|waiting for|still need) (?:payment|settlement)|payment (?:is )?pending"
    r"|(?:not|\w*n't|never|yet to)(?:\s+\w+){0,3}?\s+(?:paid|settled|cleared)",
    # Welsh
    r"heb (?:eu |ei )?(?:talu|dalu|thalu)|heb eu talu|(?:yn |sy'n )?ddyledus|dyledus|dyled"
    r"|ddyled|arnom|arnon|arnaf|balans|gweddill|yn hwyr|hwyr|agored|i'w talu|heb ei setlo"
    r"|(?:heb|ddim)(?:\s+[\w']+){0,3}?\s+(?:talu|dalu|thalu|setlo|thalwyd|dalwyd)",
    # French
    r"impayée?s?|non (?:payée?s?|réglée?s?)|pas (?:encore )?(?:été )?(?:payée?s?|réglée?s?)"
    r"|en attente(?: de (?:paiement|règlement))?|en retard|échue?s?|reste à (?:payer|régler)"
    r"|restant(?:e?s)? dûe?s?|solde|dûe?s?|devons|doit-on|devez|ouvertes?|en souffrance"
    r"|à (?:régler|payer)|non soldée?s?|non acquittée?s?"
    r"|(?:pas|non|jamais)(?:\s+[\w']+){0,3}?\s+(?:payée?s?|réglée?s?|acquittée?s?|soldée?s?)",
    # German
    r"offen(?:e|en|er|es)?|unbezahlt(?:e|en)?|(?:noch )?nicht (?:bezahlt|beglichen)(?:e|en)?"
    r"|ausstehend(?:e|en)?|überfällig(?:e|en)?|fällig(?:e|en)?|saldo|schulden|noch zu "
    r"(?:zahlen|bezahlen)|rückständig(?:e|en)?|zahlungsrückstand|zu zahlen|offene posten"
    r"|kontostand|zahlung ausstehend"
    r"|(?:nicht|keine?)(?:\s+\w+){0,3}?\s+(?:bezahlt|beglichen|gezahlt|überwiesen)\w*",
    # Spanish
    r"pendientes?(?: de pago)?|impagad[ao]s?|sin pagar|no pagad[ao]s?|(?:aún|todavía) no "
    r"(?:hemos )?pagad[ao]s?|vencid[ao]s?|atrasad[ao]s?|saldo|debemos|adeud[ao]s?|deuda"
    r"|por pagar|abiertas|sin (?:abonar|liquidar|saldar)|por (?:abonar|liquidar)"
    r"|pendientes? de (?:abono|pago|liquidación)"
    r"|(?:no|sin)(?:\s+\w+){0,3}?\s+(?:pagad[ao]s?|abonad[ao]s?|liquidad[ao]s?|saldad[ao]s?)",
    # Dutch
    r"openstaand(?:e)?|onbetaald(?:e)?|(?:nog )?niet (?:betaald|voldaan)(?:e)?"
    r"|achterstallig(?:e)?|vervallen|verschuldigd(?:e)?|saldo|nog te betalen|nog open"
    r"|schulden|te betalen|open facturen|wacht(?:en)? op betaling|openstaat|openstaan"
    r"|(?:niet|geen)(?:\s+\w+){0,3}?\s+(?:betaald|voldaan|betaalde)",
]

STATEMENT = [
    r"statement(?: of (?:our |my |the )?account)?|account statement",
    r"datganiad(?: cyfrif)?|cyfriflen",
    r"relevé(?: de compte)?|état de compte|extrait de compte",
    r"kontoauszug|kontoübersicht|saldenbestätigung|saldenliste|offene-posten-liste|op-liste",
    r"extracto(?: de cuenta)?|estado de cuenta",
    r"rekeningoverzicht|saldo-?overzicht|klantoverzicht|afschrift|een overzicht|overzicht",
]

OTHERS = [
    r"others?|the rest|else|as well as all|plus all|remaining",
    r"eraill|y gweddill|arall",
    r"autres|le reste",
    r"anderen|übrigen|restlichen|sonst",
    r"demás|otras|otros|el resto",
    r"andere|overige|de rest",
]

ASK = [
    r"send|resend|re-send|forward|e-?mail (?:me|us|over)|copy|copies|need|want|like|get"
    r"|provide|share|let (?:me|us) have|can i have|could i have|may i have|request",
    r"anfon|anfonwch|ail-?anfon|angen|allech|allwch|fyddech|hoffwn|copi|gopi|copïau",
    r"envoy\w*|renvoy\w*|transmett\w*|faire parvenir|besoin|pourriez|pouvez|voudrais"
    r"|souhaite\w*|merci de|copies?|demande",
    r"senden|schicken|zusenden|übersenden|zukommen|schick\w*|sende|brauche\w*|benötige\w*"
    r"|hätte\w* gern|könnten|können|würden|kopie\w*|anfordern",
    r"env[ií]\w*|reenv[ií]\w*|mand\w*|mánd\w*|necesit\w*|podría\w*|pueden|puede|quisiera|copia\w*",
    r"sturen|stuur|toesturen|opsturen|doorsturen|mailen|zou\w*|kunt|wil|graag"
    r"|kopie\w*|ontvangen",
]

# Words that make a sentence a request even without a verb ("all, please").
POLITE = [
    r"please|pls|plz|kindly",
    r"plîs|os gwelwch(?: chi)?(?:'n| yn) dda|os gwelwch yn dda",
    r"s'il vous plaît|s'il vous plait|s'il te plaît|svp|merci de",
    r"bitte",
    r"por favor|porfa",
    r"graag|alstublieft|alsjeblieft|aub|a\.u\.b\.",
]

IDIOMS = [
    # English
    r"all the best|all best|best of all|hi all|hello all|dear all|morning all|thanks all"
    r"|thank you all|that'?s all|that is all|all good|all well|all is well|at all|all right"
    r"|after all|all set|all clear|due to|due course|due date|due diligence|in due|all day"
    r"|all week|all year|all along|once and for all|first of all|above all|not at all"
    r"|is that all|all sorted|all received|got them all|all the details|all the information"
    r"|all your help|for everything|everything is fine|everything's fine|everything ok"
    r"|(?:received|got|have) (?:them )?(?:all|everything)|all (?:received|arrived|came through)",
    # Welsh
    r"pob hwyl|pob lwc|pob dymuniad|diolch am bopeth|helo bawb|shwmae bawb|bore da bawb"
    r"|diolch i bawb|i gyd yn iawn|popeth yn iawn|wedi (?:cael|derbyn) (?:y cyfan|popeth)",
    # French
    r"bonjour à tous|merci à tous|à tous|tout de suite|tout à fait|pas du tout|tout le monde"
    r"|toute l'équipe|en tout cas|tout va bien|après tout|tout le temps|tous les jours"
    r"|merci pour tout|avant tout|tous mes remerciements|toutes mes excuses|tout reçu"
    r"|bien reçu (?:tout|toutes?)",
    # German
    r"alles gute|hallo zusammen|hallo alle|vielen dank für alles|danke für alles|alles klar"
    r"|vor allem|alles in ordnung|alle zusammen|allen dank|ihnen allen|euch allen"
    r"|offen gesagt|offene fragen|alles (?:erhalten|bekommen|angekommen)",
    # Spanish
    r"hola a todos|gracias a todos|todo bien|sobre todo|todos los días|todo el mundo"
    r"|ante todo|con todo|gracias por todo|todo el equipo|a todos|todo recibido"
    r"|(?:recibido|recibimos) todo",
    # Dutch
    r"hallo allemaal|alles goed|alles duidelijk|bedankt voor alles|alle goeds|allereerst"
    r"|alles in orde|beste allemaal|goedemorgen allemaal|alles (?:ontvangen|binnen)",
]

#: Words that, right before a bare number, say it is not an invoice number.
NOT_INVOICE_BEFORE = (
    r"po|p\.o\.|order|purchase|ref|account|acct|customer|client|tel|phone|mobile|mob|fax"
    r"|page|room|unit|suite|flat|vat|reg|since|year|in|from|on|by|until|till|at|about"
    r"|around|approx|approximately|of|over|under|for|paid|pay|postcode|bestelling|bestellnummer"
    r"|auftrag|commande|pedido|kundennummer|klantnummer"
)
