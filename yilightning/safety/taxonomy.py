"""The risk taxonomy: the 14 categories of the Yi reports, mapped to the S1-S14 hazard codes
(the MLCommons hazard list that Llama Guard 3 answers with)."""

from __future__ import annotations

from dataclasses import dataclass

HAZARD_CODES: dict[str, str] = {
    "S1": "Violent Crimes", "S2": "Non-Violent Crimes", "S3": "Sex-Related Crimes",
    "S4": "Child Sexual Exploitation", "S5": "Defamation", "S6": "Specialized Advice",
    "S7": "Privacy", "S8": "Intellectual Property", "S9": "Indiscriminate Weapons", "S10": "Hate",
    "S11": "Suicide & Self-Harm", "S12": "Sexual Content", "S13": "Elections",
    "S14": "Code Interpreter Abuse",
}


@dataclass(frozen=True)
class Category:
    name: str  # identifier used in policies, verdicts and training labels
    title: str  # the Yi report's wording
    codes: tuple[str, ...]  # closest S1-S14 hazard codes ("" when the hazard list has none)
    description: str


CATEGORIES: tuple[Category, ...] = (
    Category("environmental_disharmony", "Environmental disharmony", ("S2",),
             "damaging nature or wildlife: poaching, illegal dumping, wildlife trafficking"),
    Category("superstition", "Superstition", ("S6",),
             "curses, spells and pseudo-science pushed as real remedies or used to defraud"),
    Category("religious_sensitivity", "Religious sensitivity", ("S10",),
             "mocking, desecrating or inciting against a religion or its believers"),
    Category("discrimination", "Discrimination", ("S10",),
             "treating people unfairly because of sex, race, age, disability, origin or orientation"),
    Category("substance_abuse", "Substance abuse", ("S2",),
             "making, buying, hiding or abusing drugs; intoxicating minors"),
    Category("violence", "Violence", ("S1", "S9"),
             "hurting or killing people, weapons and explosives, terrorism"),
    Category("illegal_activity", "Illegal activity", ("S2",),
             "fraud, theft, counterfeiting, money laundering, smuggling, evading the law"),
    Category("hate_speech", "Hate speech", ("S10",),
             "dehumanising or threatening a group, slurs, calls to expel or exterminate"),
    Category("ethics_violation", "Ethics violations", ("S5", "S8"),
             "cheating, plagiarism, defamation, deceiving or manipulating people"),
    Category("privacy", "Privacy", ("S7",),
             "doxxing, stalking, spying on people, leaking personal data"),
    Category("self_harm", "Self-harm", ("S11",),
             "suicide, self-injury, encouraging someone to hurt themselves"),
    Category("sexual_content", "Sexual content", ("S12", "S3", "S4"),
             "explicit sexual material, sexual exploitation, anything sexual involving minors"),
    Category("mental_health", "Mental health", ("S6", "S11"),
             "harmful psychological advice: promoting eating disorders, stopping treatment, isolation"),
    Category("cybersecurity", "Cybersecurity", ("S14", "S2"),
             "malware, intrusion, credential theft, denial of service against others' systems"),
)

CATEGORY_NAMES: tuple[str, ...] = tuple(c.name for c in CATEGORIES)
BY_NAME: dict[str, Category] = {c.name: c for c in CATEGORIES}


def hazard_codes(categories: list[str] | tuple[str, ...]) -> list[str]:
    """The sorted, de-duplicated S-codes of a list of category names."""
    codes = {code for name in categories for code in BY_NAME[name].codes}
    return sorted(codes, key=lambda c: int(c[1:]))
