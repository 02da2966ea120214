"""ToteSys's static rows and name lists, shaped like the live data (the sizes and value domains of
the November 2024 snapshot of the live database).

The values are our own Faker-style inventions, but they keep every quirk the pipeline must
survive: the 'Leds' typo, NULLs in the same proportions, apostrophes, commas and hyphens.
"""

from __future__ import annotations

from datetime import datetime

# The live database was created at this instant; static rows carry these timestamps.
GENESIS = datetime(2022, 11, 3, 14, 20, 49, 962000)
PEOPLE_LOADED_AT = datetime(2022, 11, 3, 14, 20, 51, 563000)  # staff and counterparties
FIRST_ORDERS_AT = datetime(2022, 11, 3, 14, 20, 52, 186000)

CURRENCIES: tuple[str, ...] = ("GBP", "USD", "EUR")

PAYMENT_TYPES: tuple[str, ...] = (
    "SALES_RECEIPT",
    "SALES_REFUND",
    "PURCHASE_PAYMENT",
    "PURCHASE_REFUND",
)
SALES_RECEIPT_ID = 1
PURCHASE_PAYMENT_ID = 3

# (name, location, manager): 'Leds' is a typo in the live data, kept on purpose.
DEPARTMENTS: tuple[tuple[str, str, str], ...] = (
    ("Sales", "Manchester", "Rowena Castellane"),
    ("Purchasing", "Manchester", "Dmitri Okafor"),
    ("Production", "Leeds", "Harriet Quayle"),
    ("Dispatch", "Leds", "Gideon Marsh"),
    ("Finance", "Manchester", "Priya Raman"),
    ("Facilities", "Manchester", "Tobias Wren"),
    ("Communications", "Leeds", "Annika Fjell"),
    ("HR", "Leeds", "Colm Brennan"),
)

# (first, last, department_id): nobody works in department 1 (Sales).
STAFF: tuple[tuple[str, str, int], ...] = (
    ("Lavinia", "Hoeger", 2),
    ("Marcus", "Kertzmann", 6),
    ("Odessa", "Bartell", 6),
    ("Ines", "Schaden", 3),
    ("Wilfred", "Gorczany", 8),
    ("Keanu", "Dibbert", 3),
    ("Shayna", "Lockman", 2),
    ("Alonzo", "Feeney", 7),
    ("Bertha", "Runte", 2),
    ("Cyril", "Witting", 2),
    ("Dahlia", "Prosacco", 5),
    ("Emmett", "Goyette", 5),
    ("Fabiola", "Nader", 4),
    ("Gunnar", "Schowalter", 7),
    ("Hester", "Wuckert", 3),
    ("Isidro", "Bashirian", 6),
    ("Juliet", "O'Reilly", 3),
    ("Kamron", "Tromp", 8),
    ("Lorna", "Stehr", 2),
    ("Milo", "Considine", 3),
)
STAFF_EMAIL_DOMAIN = "terrifictotes.com"

# (line_1, line_2, district, city, postal_code, country, phone): line_2 is NULL in 20 of 30,
# district in 14 of 30, as in the live data.
ADDRESSES: tuple[tuple[str, str | None, str | None, str, str, str, str], ...] = (
    ("4127 Gutmann Via", None, "Avon", "Port Marlenehaven", "31924", "Turkey", "1804 552310"),
    (
        "88 Runolfsson Cliffs",
        None,
        None,
        "Santa Clarita",
        "90211-4471",
        "San Marino",
        "9623 104587",
    ),
    ("271 Tremblay Fort", None, None, "Lake Charles", "70605", "Samoa", "0731 662093"),
    (
        "5530 Hills Skyway",
        None,
        "Bedfordshire",
        "Rempelside",
        "47231",
        "Republic of Korea",
        "1238 904416",
    ),
    (
        "30217 Haag Track",
        None,
        None,
        "Fort Alannaburgh",
        "55012-3390",
        "Bosnia and Herzegovina",
        "0082 317745",
    ),
    ("613 Kirlin Island", None, None, "Kendallview", "08817", "Zimbabwe", "0448 190263"),
    (
        "70115 Ebert Ways",
        None,
        "Buckinghamshire",
        "North Lesly",
        "02790",
        "Faroe Islands",
        "1372 450918",
    ),
    ("0418 Stamm Common", None, None, "Suffolk", "56620-0113", "United Kingdom", "8934 271806"),
    ("652 Lowe Garden", None, "Borders", "New Ardith", "30819-2254", "Australia", "0769 635120"),
    (
        "41903 Wyman Flat",
        "Cormier Circles",
        "Bedfordshire",
        "Beattyfort",
        "89412",
        "Democratic People's Republic of Korea",
        "4948 372615",
    ),
    (
        "233 Dooley Mission",
        None,
        "Buckinghamshire",
        "Corpus Christi",
        "85103-7719",
        "Japan",
        "0223 847001",
    ),
    (
        "6418 Bogan Expressway",
        None,
        "Berkshire",
        "Pricefurt",
        "37102-5538",
        "Tajikistan",
        "4756 019384",
    ),
    (
        "80377 Arch Dale",
        "Torp Turnpike",
        None,
        "Shanahanmouth",
        "60711-2846",
        "Bouvet Island (Bouvetoya)",
        "8807 554120",
    ),
    (
        "84419 Brekke Common",
        "Grady Turnpike",
        None,
        "Maggieport",
        "50873-9901",
        "Iraq",
        "3317 608275",
    ),
    (
        "612 Haskell Trafficway",
        "Axel Freeway",
        None,
        "East Bobbieton",
        "88240-6613",
        "Heard Island and McDonald Islands",
        "9686 221470",
    ),
    (
        "507 Orn Extension",
        "Cielo Radial",
        "Buckinghamshire",
        "South Wyattfurt",
        "04530-1187",
        "Iceland",
        "2371 995062",
    ),
    ("955 Koepp Drives", None, None, "Hackensack", "95301-2268", "Indonesia", "5506 731948"),
    (
        "58812 Sipes Cliff",
        "Leuschke Glens",
        "Bedfordshire",
        "Lake Arnoldo",
        "63815",
        "Kiribati",
        "0169 283574",
    ),
    (
        "0271 Cole Corner",
        "Izabella Ways",
        "Buckinghamshire",
        "West Brielle",
        "01142",
        "Sierra Leone",
        "1754 660419",
    ),
    ("22104 Klein Landing", None, None, "Pueblo", "91452", "Republic of Korea", "4002 118396"),
    (
        "392 Georgette Ridge",
        None,
        "Cambridgeshire",
        "Fresno",
        "91523-0478",
        "Bolivia",
        "8698 307251",
    ),
    (
        "377 Goodwin Streets",
        None,
        None,
        "Sayreville",
        "85531-6620",
        "Svalbard & Jan Mayen Islands",
        "0846 592737",
    ),
    (
        "819 Providenci Spring",
        None,
        "Berkshire",
        "Derekfort",
        "25566",
        "Papua New Guinea",
        "4110 476823",
    ),
    (
        "8407 Daren Freeway",
        None,
        None,
        "New Torranceton",
        "17123",
        "Antigua and Barbuda",
        "5583 260149",
    ),
    (
        "266 Ullrich Inlet",
        "Macey Wall",
        "Borders",
        "East Arvelton",
        "35384-1126",
        "Sudan",
        "0022 845307",
    ),
    (
        "529 Pacocha Branch",
        None,
        "Bedfordshire",
        "Napa",
        "77204-8853",
        "American Samoa",
        "5795 019664",
    ),
    (
        "7225 Breitenberg View",
        "Nora Bridge",
        "Buckinghamshire",
        "Oakland Park",
        "77486",
        "Guam",
        "2948 731590",
    ),
    ("092 Horacio Landing", None, None, "Utica", "93058", "Austria", "7773 402816"),
    (
        "37749 Heathcote Lock",
        "Noemy Pines",
        None,
        "Bartellton",
        "42417-3802",
        "Congo",
        "1685 374920",
    ),
    (
        "0349 Ruthe Heights",
        None,
        "Buckinghamshire",
        "Lake Myrl",
        "94532-7715",
        "Falkland Islands (Malvinas)",
        "1082 553418",
    ),
)

# (legal name, legal_address_id, commercial contact, delivery contact): 20 counterparties on
# 14 distinct legal addresses; names with commas and hyphens, contacts with apostrophes.
COUNTERPARTIES: tuple[tuple[str, int, str, str], ...] = (
    ("Fahey and Sons", 15, "Micheal Toy", "Mrs. Lucy Runolfsdottir"),
    ("Leannon, Predovic and Morar", 28, "Melba Sanford", "Jean Hane III"),
    ("Armstrong Inc", 2, "Jane Wiza", "Myra Kovacek"),
    ("Kohler Inc", 29, "Taylor Haag", "Alfredo Cassin II"),
    ("Frami, Yundt and Macejkovic", 22, "Homer Mitchell", "Ivan Balistreri"),
    ("Mraz LLC", 23, "Florence Casper", "Eva Upton"),
    ("Padberg, Lueilwitz and Johnson", 16, "Ms. Wilma Witting", "Christy O'Hara"),
    ("Grant - Lakin", 16, "Emily Orn", "Veronica Fay"),
    ("Price LLC", 5, "Sheryl Langworth", "Simon Schoen"),
    ("Bosco - Grant", 10, "Ed Halvorson", "Dewey Kuhic"),
    ("Corkery - Nienow", 17, "Glen Emmerich", "Laurie Hermiston"),
    ("Keeling - Emmerich", 7, "Marcus Rogahn", "Rosa Powlowski"),
    ("Hand, Krajcik and Kuhlman", 5, "Sherry Rice", "Elizabeth Senger"),
    ("Hintz, Hayes and Will", 30, "Ms. Susan Haley", "Andrea Kassulke PhD"),
    ("Emmerich, Rohan and Reynolds", 17, "Roderick Waters", "Jake Welch DVM"),
    ("Hartmann, Franecki and Ratke", 14, "Alberta Franecki DDS", "Tracy Quigley"),
    ("Kihn Group", 17, "Dr. Doris Heidenreich", "Gregg Beahan"),
    ("Smith and Sons", 17, "Laura Graham", "Olivia Franey"),
    ("Ondricka, Conroy and Turcotte", 18, "Pearl D'Amore", "Warren Weimann"),
    ("Yost, Watsica and Mann", 2, "Sophie Konopelski", "Janie Doyle"),
)

DESIGN_NAMES: tuple[str, ...] = (
    "Bronze", "Concrete", "Cotton", "Fresh", "Frozen", "Granite",
    "Metal", "Plastic", "Rubber", "Soft", "Steel", "Wooden",
)  # fmt: skip

# Faker's Unix-like paths: 60 distinct file_locations, as in the live data (just names:
# nothing here touches a file system).
FILE_LOCATIONS: tuple[str, ...] = (
    "/Applications", "/Library", "/Network", "/System", "/Users", "/bin", "/boot",
    "/boot/defaults", "/dev", "/etc", "/etc/defaults", "/etc/mail", "/etc/namedb",
    "/etc/periodic", "/etc/ppp", "/home", "/home/user", "/home/user/dir", "/lib",
    "/lost+found", "/media", "/mnt", "/net", "/opt", "/opt/bin", "/opt/include", "/opt/lib",
    "/opt/sbin", "/opt/share", "/private", "/private/tmp", "/private/var", "/proc", "/rescue",
    "/root", "/sbin", "/selinux", "/srv", "/sys", "/tmp", "/usr", "/usr/X11R6", "/usr/bin",  # noqa: S108
    "/usr/include", "/usr/lib", "/usr/libdata", "/usr/libexec", "/usr/local/bin",
    "/usr/local/src", "/usr/obj", "/usr/ports", "/usr/sbin", "/usr/share", "/usr/src", "/var",
    "/var/log", "/var/mail", "/var/spool", "/var/tmp", "/var/yp",  # noqa: S108
)  # fmt: skip

# The ORM's migration history: present in the live database, never to be ingested.
PRISMA_MIGRATIONS: tuple[tuple[str, str, str], ...] = (
    (
        "4c2f8a1e-6b0d-4e57-9a3c-2d1f7e8b5a90",
        "9f1b6c3e2a7d4f8b0c5e1a9d3b7f2e6c8a4d0b1f5e9c3a7d2b6f0e4c8a1d5b9f",
        "20221103141502_init",
    ),
    (
        "b7e3d9a2-1f4c-4a8e-8d6b-5c0e2f9a7b31",
        "2e7a4c9f1b5d8e3a6c0f2b9d7e1a4c8f5b3d0e6a9c2f7b1d4e8a5c3f0b6d9e2a",
        "20221103142031_payment_type_enum",
    ),
)
