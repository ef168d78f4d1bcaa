"""Enumerations of the contract that several services share: consultation forms (catalog plan
items, sessions) and topic content types (the catalog, and proposals converted into topics)."""

from __future__ import annotations

from enum import StrEnum

from shared.domain import Refused, glossed


@glossed
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
    cppcc_plenary = "cppcc_plenary"  # 政协全体会议 (001 §10)
    consultation_symposium = "consultation_symposium"  # 协商座谈会 (001 §17)
    inspection_consultation = "inspection_consultation"  # 视察、调研中的协商 (001 §17)
    research_consultation = "research_consultation"  # 专题调研协商 (000 四(三))
    supervision_consultation = "supervision_consultation"  # 督查工作协商 (000 四(三))
    special_consultation = "special_consultation"  # 专项协商 (002 第六条(一))
    public_participation = "public_participation"  # 公众参与协商
    opinion_dialogue = "opinion_dialogue"  # 民意恳谈会 (004)
    questionnaire = "questionnaire"  # 调查问卷 (004)
    point_to_point = "point_to_point"  # 点对点 (004 三(二)2)


F = Form
#: Which forms each kind of plan holds its consultations in (协商议题和协商形式相匹配, 001 §8),
#: from the forms each body's seed names: government 000 四 and 002 第六条; CPPCC 001 §10–§17;
#: a 有事好商量 room 003 二(四)–(五); a village 说事 platform 004 三(一)–(二).
FORMS_BY_PLAN_KIND: dict[str, frozenset[Form]] = {
    "government": frozenset({
        F.thematic_consultation, F.symposium, F.briefing, F.hearing, F.counterpart, F.written, F.online,
        F.heart_to_heart, F.proposal_handling, F.research_consultation, F.supervision_consultation,
        F.special_consultation, F.public_participation, F.opinion_dialogue, F.questionnaire}),
    "cppcc": frozenset({
        F.thematic_consultation, F.standing_committee_deliberation, F.quarterly_symposium, F.counterpart,
        F.sector, F.proposal_handling, F.consultation_symposium, F.symposium, F.briefing,
        F.inspection_consultation, F.cppcc_plenary, F.written, F.online}),
    "cppcc_room": frozenset({
        F.grassroots_meeting, F.symposium, F.consultation_symposium, F.heart_to_heart, F.online,
        F.point_to_point}),
    "village": frozenset({
        F.grassroots_meeting, F.symposium, F.online, F.opinion_dialogue, F.questionnaire, F.point_to_point}),
}


def current_plan_kind(kind: str) -> str:
    """A plan kind by its current name: "grassroots", the one name both grassroots lists once
    had, meant the village 说事 platform's 开单 list (004), now ``village``; clients and stored
    events may still say it."""
    return "village" if kind == "grassroots" else kind


def check_form(plan_kind: str, form: str) -> None:
    """Refuse a form the plan's kind does not hold its consultations in."""
    kind = current_plan_kind(plan_kind)
    allowed = FORMS_BY_PLAN_KIND[kind]
    if Form(form) not in allowed:
        raise Refused(
            f"A {kind} plan does not hold a '{form}' consultation: the form must suit the topic and "
            f"the body (协商议题和协商形式相匹配, 001 §8). Its forms: {', '.join(sorted(allowed))}.",
            rule="form_not_allowed",
        )


@glossed
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
    party_policy = "party_policy"  # 党的大政方针 (a village list may not take it, 004 三(二)1)
    party_documents = "party_documents"  # 党委重要文件、决策部署 (CPPCC plans take them, 001 §4)
    normative_document = "normative_document"  # 行政规范性文件
    major_public_policy = "major_public_policy"  # 重大公共政策
    fixed_by_law = "fixed_by_law"  # 法律法规已有明文规定
    beyond_self_government = "beyond_self_government"  # 超出村民自治范围
    other = "other"
