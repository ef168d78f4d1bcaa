"""Enumerations of the contract that several services share: consultation forms (catalog plan
items, sessions) and topic content types (the catalog, and proposals converted into topics)."""

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


class ContentType(StrEnum):
    work_report = "work_report"  # 政府工作报告
    development_plan = "development_plan"  # 发展计划、规划
    budget = "budget"  # 预决算
    major_decision = "major_decision"  # 重大决策
    regulation = "regulation"  # 法规规章
    public_resources = "public_resources"  # 公共资源配置、重大项目
    reform = "reform"  # 体制改革方案
    livelihood = "livelihood"  # 民生事项
    personnel = "personnel"  # 人选、名额
    cppcc_affairs = "cppcc_affairs"  # 政协内部事务
    party_policy = "party_policy"  # 党的大政方针
    fixed_by_law = "fixed_by_law"  # 法律法规已有明文规定
    beyond_self_government = "beyond_self_government"  # 超出村民自治范围
    other = "other"
