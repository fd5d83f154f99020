"""Word lists and regex fragments of the builtin grammar (English and Russian).

Everything here is a constant; the grammar itself (which phrase means what) lives in ``rules.py``,
``schedule.py`` and ``endpoints.py`` and is documented with examples in ``docs/builtin-provider.md``.
"""
from __future__ import annotations

# Words that may be left over after every rule ran without making the request ambiguous. Words that
# usually start an instruction ("with", "new", "join", "except") are deliberately absent: left over,
# they mean a rule did not understand something, and the compiler asks.
STOPWORDS_EN = frozenset("""
a an the all any some every each of and then also please as its it their them this that these those
table tables database db data row rows record records event events message messages file files
on by for at in into to from via there here whole entire both only
please pls plz kindly hey hi hello thanks thx can could would you we i me us my our need want wanna
asap just quickly now ty cheers pleeease pleas plase
""".split())
STOPWORDS_RU = frozenset("""
и а также все всё всех весь данные данных таблицу таблицы таблица таблице таблицей файл файла файлы
строки строк записи записей событий события сообщения сообщений с со по на это их его её пожалуйста затем только
мне нам нужно надо хочу хотим можешь можете можно плиз пж срочно просто пожалуйста результат
""".split())

# Nouns that name what is moved ("Load orders from ..."); they carry no instruction. A phrase of them in the
# verb's object slot ("copy the order lines from ...") is what is moved (verbs.scan_moved_nouns).
ENTITY_NOUNS = frozenset("""
order orders customer customers product products click clicks sale sales user users payment payments
transaction transactions invoice invoices item items log logs metric metrics reading readings
measurement measurements sensor sensors visit visits session sessions line lines entry entries
account accounts employee employees shipment shipments delivery deliveries refund refunds review reviews
rating ratings booking bookings reservation reservations ticket tickets patient patients appointment
appointments doctor doctors clinic clinics prescription prescriptions lab labs result results test tests
signup signups subscription subscriptions subscriber subscribers member members contact contacts lead leads
deal deals purchase purchases store stores shop shops supplier suppliers vendor vendors category categories
page pages pageview pageviews view views device devices trip trips ride rides driver drivers vehicle vehicles
warehouse warehouses inventory stock stocks price prices detail details history histories profile profiles
student students course courses grade grades claim claims policy policies loan loans card cards
department departments region regions city cities country countries event click-stream clickstream
charge charges fee fees salary salaries transfer transfers message chat chats call calls ad ads campaign
campaigns impression impressions conversion conversions lineitem lineitems basket baskets cart carts
заказы заказов заказ клиенты клиентов покупатели покупателей товары товаров продукты продуктов
события клики кликов продажи продаж платежи платежей пользователи пользователей строки строк позиции позиций
транзакции транзакций счета счетов пациенты пациентов визиты визитов приёмы приемы приёмов приемов врачи
врачей анализы анализов сотрудники сотрудников отзывы отзывов подписки подписок доставки доставок
возвраты возвратов логи логов метрики метрик показания показаний датчики датчиков сессии сессий категории
категорий магазины магазинов склады складов остатки остатков цены цен поставщики поставщиков
назначения назначений рецепты рецептов направления направлений лекарства лекарств препараты препаратов
заявки заявок
""".split())
# Nouns whose "largest"/"top" means the largest amount ("the 5 largest orders" -> by amount).
MONEY_NOUNS = frozenset("""
order orders payment payments transaction transactions invoice invoices sale sales deal deals purchase
purchases refund refunds charge charges transfer transfers заказов заказы платежей платежи транзакций
""".split())
# Russian plural genitives of what a top-N ranks ("топ-10 клиентов по выручке") -> the grouping column.
GRAIN_RU = {"клиентов": "customer", "покупателей": "customer", "товаров": "product", "продуктов": "product",
            "стран": "country", "городов": "city", "категорий": "category", "пользователей": "user",
            "магазинов": "store", "поставщиков": "supplier", "страниц": "page", "регионов": "region",
            "пациентов": "patient", "врачей": "doctor", "препаратов": "drug", "лекарств": "drug"}
# Russian entity words in joins ("с городом клиента", "соединив с клиентами") -> the English table name.
JOIN_ENTITIES_RU = {"клиента": "customers", "клиентов": "customers", "клиентами": "customers",
                    "покупателя": "customers", "покупателями": "customers", "товара": "products",
                    "товарами": "products", "продукта": "products", "продуктами": "products",
                    "пользователя": "users", "пользователями": "users", "заказа": "orders", "заказами": "orders",
                    "магазина": "stores", "магазинами": "stores", "пациента": "patients",
                    "пациентами": "patients", "врача": "doctors", "врачами": "doctors",
                    "приёма": "appointments", "приема": "appointments", "приёмами": "appointments",
                    "приемами": "appointments", "назначениями": "prescriptions", "рецептами": "prescriptions"}

VERBS = frozenset("""
load loads loading copy copies copying sync syncs syncing synchronize synchronise mirror move moving
export exporting import importing ingest ingesting replicate replicating transfer transferring send sending
push pushing write writing save saving store storing put extract extracting pull pulling bring land deliver
upload uploading stream streaming loaded copied moved exported imported ingested replicated transferred
sent pushed written saved stored extracted pulled brought landed delivered uploaded synced mirrored
replicates mirrors pushes ships ship shipping shipped dump dumps dumping dumped pulls ingests migrate
migrates migrating migrated feed feeding populate populating populated get fetch fetching grab take
transfers exports imports moves sends writes saves stores puts extracts brings lands delivers uploads
read reads reading consume consumes consuming backfill backfills backfilling archive archiving
laod lod laoding cpoy coppy copys exprot exoprt imoprt syncronize syncronise synchronze sycn
загружать загружай загрузи загрузить загружайте грузить копировать скопируй скопировать копируй
перенеси перенести переносить выгрузи выгрузить выгружать выгружай экспортируй экспортировать
импортируй импортировать синхронизируй синхронизировать синхронизировать переливай перелей переливать
залей заливать заливай отправляй отправлять сохраняй сохранять пиши писать стримить стримь транслировать
перелить перелейте перекинь перекинуть перекидывай перекидывать закинь закинуть скинь скинуть положи положить
реплицируй реплицировать реплицировать выгрузите загрузите скопируйте перенесите отправь отправить забери
забрать вытащи вытащить подтяни подтянуть грузи загружай импортируй экспортируй переложи переложить
refresh refreshes refreshing refreshed upsert upserts upserting upserted
загрузка загрузку выгрузка выгрузку перенос копирование
взять возьми бери брать сохрани сохранить сохраните положи выгружать копировать загружать
""".split())

SOURCE_PREPOSITIONS = frozenset(["from", "of", "из"])
TARGET_PREPOSITIONS = frozenset(["into", "to", "onto", "в", "во"])

# Verbs that change or destroy data: the builtin provider refuses instead of planning.
# "remove/drop/удалить" followed by duplicates is cleaning and is allowed (see DEDUPE_EXCEPTION).
DESTRUCTIVE_EN = (r"delete|deletes|deleting|drop|drops|dropping|truncate|truncating|erase|erasing|wipe|"
                  r"wiping|purge|purging|destroy|destroying|remove|removing|update|updating|modify|"
                  r"modifying|alter|altering|nuke|nuking|clear\s+out|clearing\s+out|clean\s+out|cleaning\s+out|"
                  r"empty\s+out|overwrite\s+the\s+source|wipe\s+out|wiping\s+out|zero\s+out|zeroing\s+out|"
                  r"set(?:ting)?\s+(?:every|all|each)|in[\s-]place(?!\s+of)")
DESTRUCTIVE_RU = (r"удал\w*|очист\w*|стереть|сотри|сотрите|стирать|уничтож\w*|измени|изменить|измените|"
                  r"изменять|обнови|обновить|обновите|дропни|дропнуть|транкейт\w*|снеси|снести|сносить|снесите|"
                  r"грохни|грохнуть|затри|затереть|обнул\w*|занул\w*|проставь|проставить")
# "dropping rows where email is missing" while loading filters the batch: drop/remove (never delete) with
# rows and a condition, in a request that also says what to load (ROW_FILTER_EXCEPTION, rules.py).
ROW_FILTER_EXCEPTION = (r"(?:the\s+|any\s+|all\s+)?(?:rows|records|entries|lines|ones)\s+(?:where|with|without|that|"
                        r"whose|having|lacking|missing|in\s+which)\b|(?:the\s+|any\s+)?(?:missing|null|empty|blank|NA|N/A|NaN)\s+\w+|"
                        r"(?:строки|записи)\s+(?:без|где|с\s+пуст)")
# "updating existing rows by order_id" while loading is a merge on that key, not a change of the source.
MERGE_EXCEPTION = r"(?:the\s+)?(?:existing|matching|old)\s+(?:rows|records|entries|ones)\s+(?:by|on|using|keyed\s+(?:by|on))\s+"
DEDUPE_EXCEPTION = (r"(?:the\s+|all\s+)?(?:duplicates?|duplicate\s+rows|dupes|doubles|whitespace|spaces|"
                    r"blank\s+\w+|дубл\w*|повтор\w*|пробел\w*)")

ENGINES = {
    "postgresql": "postgres", "postgres": "postgres", "pg": "postgres", "постгрес": "postgres",
    "постгресе": "postgres", "постгреса": "postgres", "pgsql": "postgres", "psql": "postgres",
    "postgre": "postgres", "postgress": "postgres", "postgresq": "postgres", "postrgres": "postgres",
    "postgers": "postgres", "postgressql": "postgres", "пг": "postgres", "постгре": "postgres",
    "clickhouse": "clickhouse", "кликхаус": "clickhouse", "кликхаусе": "clickhouse", "ch": "clickhouse",
    "click house": "clickhouse", "click-house": "clickhouse", "clikhouse": "clickhouse",
    "clickhose": "clickhouse", "clickhous": "clickhouse", "clickhuose": "clickhouse", "кх": "clickhouse",
    "кликхауз": "clickhouse",
    "sqlite": "sqlite", "sqlite3": "sqlite", "kafka": "kafka", "кафка": "kafka", "кафки": "kafka",
    "кафку": "kafka",
}
# The engine words as a regex (longest first), for the endpoint scan; Russian stems take any ending.
ENGINE_WORDS = "|".join(sorted((w.replace(" ", r"[\s-]") for w in ENGINES if w != "click-house"),
                               key=len, reverse=True)) + r"|постгрес\w*|кликхаус\w*|кликхауз\w*|кафк\w*"
ENGINE_NAMES = {"postgres": "PostgreSQL", "clickhouse": "ClickHouse", "sqlite": "SQLite", "kafka": "Kafka",
                "file": "file", "http": "HTTP API"}

# Words for columns that users say in plural or in prose; the SQL generator still resolves the
# result against the real source columns when it knows them.
COLUMN_WORDS = {
    "emails": "email", "e-mails": "email", "e-mail": "email", "email addresses": "email",
    "email address": "email", "e-mail addresses": "email", "e-mail address": "email",
    "names": "name", "cities": "city", "countries": "country", "titles": "title", "phones": "phone",
    "phone numbers": "phone", "phone number": "phone", "statuses": "status", "amounts": "amount",
    "prices": "price", "pages": "page", "revenue": "amount", "sales": "amount", "turnover": "amount",
    "почту": "email", "почты": "email", "email'ы": "email", "имена": "name", "города": "city",
    "город": "city", "страны": "country", "страну": "country", "сумму": "amount", "суммы": "amount",
    "сумма": "amount", "суммой": "amount", "выручку": "amount", "выручка": "amount", "телефоны": "phone",
    "странам": "country", "городам": "city", "статусам": "status", "врачам": "doctor", "клиентам": "customer",
    "покупателям": "customer", "товарам": "product", "продуктам": "product", "категориям": "category",
    "пользователям": "user", "магазинам": "store", "регионам": "region", "каналам": "channel",
    "отделениям": "department", "клиникам": "clinic", "пациентам": "patient", "датчикам": "sensor",
    "страницам": "page", "поставщикам": "supplier", "сотрудникам": "employee", "типам": "type",
    "страна": "country", "статус": "status", "категория": "category", "канал": "channel", "отдел": "department",
    "имя": "name", "цена": "price", "почта": "email", "телефон": "phone",
}
# Russian singular datives after «по (каждому)» in a grouping ("по каждому врачу", "по каналу") -> the column word.
GROUP_WORDS_RU = {"врачу": "doctor", "клиенту": "customer", "покупателю": "customer", "товару": "product",
                  "продукту": "product", "категории": "category", "пользователю": "user", "магазину": "store",
                  "региону": "region", "каналу": "channel", "отделению": "department", "клинике": "clinic",
                  "пациенту": "patient", "датчику": "sensor", "странице": "page", "поставщику": "supplier",
                  "сотруднику": "employee", "типу": "type", "статусу": "status", "городу": "city", "стране": "country",
                  "специальности": "specialty", "препарату": "drug", "лекарству": "drug", "диагнозу": "diagnosis",
                  "лаборатории": "lab", "тесту": "test", "анализу": "test", "полу": "sex", "отделу": "department"}
# Russian nouns of what a measure reads («средняя стоимость», «сумма оплат», «среднее значение») -> the column word.
MEASURE_NOUNS_RU = {"стоимост": "price", "цен": "price", "оплат": "amount", "платеж": "amount", "платёж": "amount",
                    "длительност": "duration", "продолжительност": "duration", "значени": "value", "доз": "dose",
                    "выручк": "amount", "сумм": "amount"}
MONEY_WORDS = ("revenue", "sales", "turnover", "выручк", "продаж")

STATUS_WORDS = {
    "paid": "paid", "pending": "pending", "refunded": "refunded", "cancelled": "cancelled",
    "canceled": "canceled", "shipped": "shipped", "delivered": "delivered", "completed": "completed",
    "failed": "failed",
}
STATUS_WORDS_RU = {"оплаченн": "paid", "отменённ": "cancelled", "отмененн": "cancelled",
                   "возвращённ": "refunded", "возвращенн": "refunded", "ожидающ": "pending",
                   "доставленн": "delivered", "отправленн": "shipped",
                   "завершённ": "completed", "завершенн": "completed", "выполненн": "completed",
                   "неудачн": "failed", "запланированн": "scheduled"}

PERIODS = {"day": "day", "days": "day", "date": "day", "calendar day": "day", "week": "week",
           "weeks": "week", "month": "month", "months": "month", "hour": "hour", "hours": "hour",
           "daily": "day", "weekly": "week", "monthly": "month", "hourly": "hour",
           "дням": "day", "день": "day", "неделям": "week", "неделю": "week", "месяцам": "month",
           "месяц": "month", "часам": "hour", "час": "hour",
           "ежедневн": "day", "еженедельн": "week", "ежемесячн": "month", "ежечасн": "hour"}

WEEKDAYS = {"monday": 1, "tuesday": 2, "wednesday": 3, "thursday": 4, "friday": 5, "saturday": 6,
            "sunday": 0, "mondays": 1, "tuesdays": 2, "wednesdays": 3, "thursdays": 4, "fridays": 5,
            "saturdays": 6, "sundays": 0}
WEEKDAYS_RU = {"понедельник": 1, "вторник": 2, "среду": 3, "четверг": 4, "пятницу": 5, "субботу": 6,
               "воскресенье": 0, "понедельникам": 1, "вторникам": 2, "средам": 3, "четвергам": 4,
               "пятницам": 5, "субботам": 6, "воскресеньям": 0}

# Default time column for "per day" when the request does not say "per day of <column>".
DEFAULT_TIME_COLUMN = "created_at"

# Regex fragments.
IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
# Words that must never be read as a column name in "lowercasing X", "per X", ...
NOT_A_COLUMN = (r"(?!(?:the|a|an|all|and|or|with|from|into|to|of|by|per|on|in|each|every|as|at|"
                r"only|then|also|table|column|file|whitespace|spaces|duplicates?|dupes|empty|blank|missing|"
                r"null|values|daily|weekly|monthly|hourly|call|calling|rename|renaming|renamed|top|limit|"
                r"limited|sorted|ordered|ranked|joined|joining|skipping|ignoring|excluding|keeping|since|before|"
                r"after|between|until|over|under|above|below|more|less|last|past|first|onto|where|whose|without|"
                r"except|including|then|it|them)\b)")
_COLUMN_WORD = rf"e-?mail\s+address(?:es)?|e-?mails?|phone\s+numbers?|{IDENT}"
_COLUMN_WORD_RU = rf"почту|почты|имена|города|город|страны|страну|сумму|суммы|телефоны|{_COLUMN_WORD}"


# Two words naming one column ("diagnosis code", "birth date" -> diagnosis_code, birth_date).
_COMPOUND = r"[A-Za-z]+\s+(?:code|date|time|name|number|id|type|level|status|address|group)(?![\w.])"


def column(group: str, russian: bool = False, compound: bool = False) -> str:
    """A named group matching a column as users say it ("emails", "e-mail addresses", "city"); with
    ``compound``, also two words naming one ("diagnosis code")."""
    words = _COLUMN_WORD_RU if russian else _COLUMN_WORD
    return rf"{NOT_A_COLUMN}(?P<{group}>{_COMPOUND + '|' if compound else ''}{words})"


VALUE = r"'[^']*'|\"[^\"]*\"|-?\d+(?:\.\d+)?|[A-Za-z_][\w\-]*"
NUMBER = r"\d{1,3}(?:[ ,_]\d{3})+|\d+"

# Places as data stores them (an ISO code or the English name) and the word stems that name them in
# English and Russian (any ending): "German orders", «из Казахстана», «клиентов из Москвы». A value of a
# real column is linked through them. A stem is a word's start (any ending follows), so a stem that starts
# other words too («грузи» - load) is given as its word forms instead.
PLACES = (
    (("DE", "DEU", "Germany"), ("german", "deutsch", "герман", "немец", "немецк", "немц")),
    (("RU", "RUS", "Russia"), ("russia", "росси", "российск", "русск")),
    (("KZ", "KAZ", "Kazakhstan"), ("kazakh", "казахстан", "казахск")),
    (("FR", "FRA", "France"), ("france", "french", "франци", "французск")),
    (("US", "USA", "United States"), ("america", "usa", "united states", "сша", "америк")),
    (("GB", "UK", "GBR", "United Kingdom"), ("british", "britain", "united kingdom", "великобритан", "британ")),
    (("IN", "IND", "India"), ("india", "индия", "индии", "индию", "индийск")),
    (("BR", "BRA", "Brazil"), ("brazil", "бразил")),
    (("JP", "JPN", "Japan"), ("japan", "япони", "японск")),
    (("CN", "CHN", "China"), ("china", "chinese", "китай", "китая", "китае", "китайск")),
    (("IT", "ITA", "Italy"), ("ital", "итали", "итальянск")),
    (("ES", "ESP", "Spain"), ("spain", "spanish", "испани", "испанск")),
    (("PL", "POL", "Poland"), ("poland", "polish", "польш", "польск")),
    (("UA", "UKR", "Ukraine"), ("ukrain", "украин")),
    (("BY", "BLR", "Belarus"), ("belarus", "беларус", "белорус")),
    (("TR", "TUR", "Turkey"), ("turkey", "turkish", "турци", "турецк")),
    (("NL", "NLD", "Netherlands"), ("netherlands", "dutch", "holland", "нидерланд", "голланд")),
    (("CA", "CAN", "Canada"), ("canad", "канад")),
    (("AU", "AUS", "Australia"), ("australia", "австрали")),
    (("AT", "AUT", "Austria"), ("austria", "австри")),
    (("SE", "SWE", "Sweden"), ("swed", "швеци", "шведск")),
    (("UZ", "UZB", "Uzbekistan"), ("uzbek", "узбек")),
    (("AM", "ARM", "Armenia"), ("armenia", "армени", "армянск")),
    (("GE", "GEO", "Georgia"), ("georgia", "грузия", "грузии", "грузию", "грузинск")),
    (("KR", "KOR", "South Korea"), ("korea", "корея", "кореи", "корейск")),
    (("MX", "MEX", "Mexico"), ("mexic", "мексик")),
    (("PT", "PRT", "Portugal"), ("portug", "португал")),
    (("CZ", "CZE", "Czechia"), ("czech", "чехи", "чешск")),
    (("FI", "FIN", "Finland"), ("finland", "finnish", "финлянд", "финск")),
    (("Moscow",), ("moscow", "москв", "московск")),
    (("Saint Petersburg", "St Petersburg", "St. Petersburg"), ("petersburg", "петербург", "питер")),
    (("Kyiv", "Kiev"), ("kyiv", "kiev", "киев")),
    (("Munich",), ("munich", "мюнхен")),
    (("Paris",), ("paris", "париж")),
    (("Vienna",), ("vienna", "вены", "вене", "вена")),
    (("Prague",), ("prague", "прага", "праги", "праге", "прагу")),
    (("Warsaw",), ("warsaw", "варшав")),
    (("Tokyo",), ("tokyo", "токио")),
    (("Beijing",), ("beijing", "пекин")),
    (("New York",), ("new york", "нью-йорк")),
    (("Lyon",), ("lyon", "лион")),
    (("Yekaterinburg", "Ekaterinburg"), ("yekaterinburg", "ekaterinburg", "екатеринбург")),
)
