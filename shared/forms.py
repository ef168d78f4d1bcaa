"""The consultation forms of the contract, shared by the catalog (plan items) and sessions."""

from __future__ import annotations

from enum import StrEnum


class Form(StrEnum):
    """Consultation forms (协商形式: 000 四, 001 §10–§17, 002 第六条, 003, 004)."""

    thematic_consultation = "thematic_consultation"  # 专题协商会
    standing_committee_deliberation = "standing_committee_deliberation"  # 专题议政性常委会
    quarterly_symposium = "quarterly_symposium"  # 季协商座谈会
    counterpart = "counterpart"  # 对口协商
    sector = "sector"  # 界别协商
    proposal_handling = "proposal_handling"  # 提案办理协商
    hearing = "hearing"  # 决策听证会
    symposium = "symposium"  # 座谈讨论会
    briefing = "briefing"  # 形势通报会
    written = "written"  # 书面征询
    online = "online"  # 网络问政
    heart_to_heart = "heart_to_heart"  # 谈心谈话
    grassroots_meeting = "grassroots_meeting"  # 说事日/议事会
