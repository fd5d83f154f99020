"""The Pipeline aggregate: every rule about a pipeline's life lives here.

Event classes are named exactly like their Avro records (``Pipeline.PipelineRequested`` is
``aietl.pipelines.v1.PipelineRequested``), so the bridge in :mod:`services.domain.events` maps one to
the other without a table. State is never stored: it is the fold of the pipeline's events through the
library's mutators.
"""
from __future__ import annotations

from typing import Optional
from uuid import UUID

from eventsourcing.domain import Aggregate, event


class PipelineError(Exception):
    """A command broke a rule of the Pipeline aggregate; nothing was changed."""

    code = "pipeline_error"


class PipelineExistsError(PipelineError):
    code = "pipeline_exists"


class TenantMismatchError(PipelineError):
    """A command for another tenant's pipeline (forged on the bus, or a bug): never applied."""
    code = "tenant_mismatch"


class PipelineNotFoundError(PipelineError):
    code = "pipeline_not_found"


class DescriptionError(PipelineError):
    code = "invalid_description"


class StaleProposalError(PipelineError):
    code = "stale_proposal"


class StageError(PipelineError):
    """A proposal arrived in a stage that does not accept it (e.g. SQL before a plan)."""

    code = "wrong_stage"


class RepairLimitError(PipelineError):
    code = "repair_limit"


class DeployError(PipelineError):
    code = "not_deployable"


class LifecycleError(PipelineError):
    """Pause, resume, run or change a pipeline in a lifecycle state that does not allow it."""

    code = "wrong_lifecycle"


class PipelineDeletedError(PipelineError):
    code = "pipeline_deleted"


class AnswerError(PipelineError):
    """An answer to a question that is not open (or names a slot the question did not ask for)."""

    code = "not_asked"


class RunNotFoundError(PipelineError):
    code = "run_not_found"


class RunFinishedError(PipelineError):
    """Cancelling a run that has already ended (as the runs log says)."""

    code = "run_finished"


MAX_REPAIR_ROUNDS = 3
# Stages in which each kind of proposal is accepted for the current revision.
ACCEPTS = {
    "plan": {"requested", "revising"},
    "sql": {"planned", "repairing"},
    "transform": {"sql_proposed"},
    "schema": {"sql_proposed", "transform_proposed"},
    "qa": {"schema_checked"},
    "reflection": {"qa_failed"},
    "draft": {"qa_passed", "qa_failed"},
    "revise": {"draft_ready", "draft_failed", "needs_clarification"},
}


MAX_DESCRIPTION = 4000
SQL_ARTIFACTS = ("extract_sql", "extract_sql_initial", "transform_sql", "target_ddl", "target_setup_sql")
# Drafting stages: the pipeline waits for this agent's proposal (named in a timeout's reason).
WAITS_FOR = {
    "requested": "planner", "revising": "planner", "planned": "sql-expert", "repairing": "sql-expert",
    "sql_proposed": "schema-analyst (or python-coder)", "transform_proposed": "schema-analyst",
    "schema_checked": "qa-validator", "qa_passed": "reflector", "qa_failed": "reflector",
}


def check_description(description: str) -> None:
    if not description or not description.strip():
        raise DescriptionError("description must not be empty")
    if len(description) > MAX_DESCRIPTION:
        raise DescriptionError(f"description is longer than {MAX_DESCRIPTION} characters")


class Pipeline(Aggregate):
    """A pipeline: from a request, through drafts, to deployed versions."""

    @staticmethod
    def create_id(pipeline_id: UUID, **_: object) -> UUID:
        # Ids are chosen by the gateway so the HTTP answer can name the pipeline before it exists.
        return pipeline_id

    @event("PipelineRequested")
    def __init__(self, pipeline_id: UUID, tenant_id: str, description: str, name: Optional[str],
                 labels: dict, command_id: str):
        self.tenant_id = tenant_id
        self.description = description
        self.name = name
        self.labels = dict(labels)
        self.status = "requested"
        self.command_ids = {command_id}
        self.revision = 1
        self.repair_round = 0
        self.drafts: list[dict] = []
        self.current: dict = {}  # artifacts of the revision being drafted
        self.lifecycle = "draft"  # draft -> deployed <-> paused; deleted is final
        self.deployed_version: Optional[int] = None
        self.deployed_history: list[int] = []
        self.runs: dict[str, dict] = {}  # run id -> {version, trigger_kind, slot}
        self.open_slots: list[str] = []  # what the last clarification asked for (its `missing`)
        self.instructions: list[str] = []  # the instructions the open clarification was about
        self.answers: list[dict] = []  # every answer so far: {"slot", "text"}; the planner applies them all

    @classmethod
    def request(cls, pipeline_id: UUID, tenant_id: str, description: str, name: Optional[str],
                labels: dict, command_id: str) -> "Pipeline":
        check_description(description)
        return cls(pipeline_id=pipeline_id, tenant_id=tenant_id, description=description, name=name,
                   labels=labels, command_id=command_id)

    # -- rules ---------------------------------------------------------------------------------
    def check_tenant(self, tenant_id: str) -> None:
        if tenant_id != self.tenant_id:
            raise TenantMismatchError(f"pipeline {self.id} does not belong to tenant {tenant_id!r}")

    def check_revision(self, revision: int) -> None:
        if revision != self.revision:
            raise StaleProposalError(f"proposal for revision {revision} is stale: the pipeline is at "
                                     f"revision {self.revision}")

    def check_stage(self, kind: str) -> None:
        if self.status not in ACCEPTS[kind]:
            raise StageError(f"a {kind} proposal is not accepted while the pipeline is {self.status}")

    def check_drafting(self, stage: str) -> None:
        """A failure is about the stage the pipeline is in; one about a stage it has left is stale."""
        if self.status not in WAITS_FOR:
            raise StageError(f"nothing is being drafted: the pipeline is {self.status}")
        if stage != self.status:
            raise StageError(f"the pipeline has moved on from {stage} to {self.status}")

    def check_stage_overdue(self, stage: str, now, timeout_s: float) -> float:
        """Seconds the pipeline has waited in ``stage``; a StageError while it is still within ``timeout_s``."""
        self.check_drafting(stage)
        waited = (now - self.modified_on).total_seconds()
        if waited < timeout_s:
            raise StageError(f"{stage} has waited {waited:.0f} s, within its {timeout_s:g} s bound")
        return waited

    def _proposal(self, kind: str, revision: int) -> None:
        self.check_not_deleted()
        self.check_revision(revision)
        self.check_stage(kind)

    def _seen(self, command_id: str) -> None:
        self.command_ids.add(command_id)

    # -- proposals from the agents ---------------------------------------------------------------
    def propose_plan(self, revision: int, spec_json: str, understood: list, confidence: float,
                     recalled_ids: list, llm: Optional[dict], command_id: str) -> None:
        self._proposal("plan", revision)
        self._plan_proposed(revision=revision, spec_json=spec_json, understood=understood,
                            confidence=confidence, recalled_ids=recalled_ids, llm=llm, command_id=command_id)

    @event("PlanProposed")
    def _plan_proposed(self, revision, spec_json, understood, confidence, recalled_ids, llm, command_id):
        self.status = "planned"
        self.current = {"spec_json": spec_json, "recalled_ids": list(recalled_ids)}
        self._seen(command_id)

    def ask_clarification(self, revision: int, question: str, missing: list, llm: Optional[dict],
                          command_id: str) -> None:
        self._proposal("plan", revision)
        self._clarification_requested(revision=revision, question=question, missing=missing, llm=llm,
                                      command_id=command_id)

    @event("ClarificationRequested")
    def _clarification_requested(self, revision, question, missing, llm, command_id):
        self.status = "needs_clarification"
        self.instructions = self.current.get("instructions") or []  # what the answer's revision keeps
        self.current = {"question": question}
        self.open_slots = list(missing)
        self._seen(command_id)

    def refuse(self, revision: int, reason: str, llm: Optional[dict], command_id: str) -> None:
        self._proposal("plan", revision)
        self._request_refused(revision=revision, reason=reason, llm=llm, command_id=command_id)

    @event("RequestRefused")
    def _request_refused(self, revision, reason, llm, command_id):
        self.status = "refused"
        self.current = {"refusal": reason}
        self._seen(command_id)

    def propose_sql(self, revision: int, extract_sql, transform_sql, target_ddl, source_dialect: str,
                    target_dialect: str, llm: Optional[dict], command_id: str, extract_sql_initial=None,
                    target_setup_sql=(), notes=()) -> None:
        self._proposal("sql", revision)
        self._sql_proposed(revision=revision, extract_sql=extract_sql, transform_sql=transform_sql,
                           target_ddl=target_ddl, source_dialect=source_dialect, target_dialect=target_dialect,
                           extract_sql_initial=extract_sql_initial, target_setup_sql=list(target_setup_sql),
                           notes=list(notes), llm=llm, command_id=command_id)

    @event("SqlProposed")
    def _sql_proposed(self, revision, extract_sql, transform_sql, target_ddl, source_dialect, target_dialect,
                      extract_sql_initial, target_setup_sql, notes, llm, command_id):
        self.status = "sql_proposed"
        # What the previous round proposed, so a repair that reproduces it can be told apart (reflector).
        if "extract_sql" in self.current:
            self.current["previous_sql"] = [self.current.get(k) for k in SQL_ARTIFACTS]
        self.current.update(extract_sql=extract_sql, transform_sql=transform_sql, target_ddl=target_ddl,
                            source_dialect=source_dialect, target_dialect=target_dialect,
                            extract_sql_initial=extract_sql_initial, target_setup_sql=list(target_setup_sql),
                            sql_notes=list(notes))
        self._seen(command_id)

    def propose_transform(self, revision: int, python_code: str, llm: Optional[dict], command_id: str) -> None:
        self._proposal("transform", revision)
        self._transform_proposed(revision=revision, python_code=python_code, llm=llm, command_id=command_id)

    @event("TransformProposed")
    def _transform_proposed(self, revision, python_code, llm, command_id):
        self.status = "transform_proposed"
        self.current["python_code"] = python_code
        self._seen(command_id)

    def record_schema_check(self, revision: int, source_columns_json: str, target_columns_json: str,
                            pii_json: str, issues: list, sample_rows_json: str, command_id: str) -> None:
        self._proposal("schema", revision)
        self._schema_checked(revision=revision, source_columns_json=source_columns_json,
                             target_columns_json=target_columns_json, pii_json=pii_json, issues=issues,
                             sample_rows_json=sample_rows_json, command_id=command_id)

    @event("SchemaChecked")
    def _schema_checked(self, revision, source_columns_json, target_columns_json, pii_json, issues,
                        sample_rows_json, command_id):
        self.status = "schema_checked"
        self.current.update(source_columns_json=source_columns_json, target_columns_json=target_columns_json,
                            pii_json=pii_json)
        self._seen(command_id)

    def record_qa(self, revision: int, passed: bool, checks_json: str, findings: list, dry_run_rows_in: int,
                  dry_run_rows_out: int, command_id: str) -> None:
        self._proposal("qa", revision)
        kwargs = dict(revision=revision, passed=passed, checks_json=checks_json, findings=findings,
                      dry_run_rows_in=dry_run_rows_in, dry_run_rows_out=dry_run_rows_out, command_id=command_id)
        if passed:
            self._qa_passed(**kwargs)
        else:
            self._qa_failed(**kwargs)

    @event("QaPassed")
    def _qa_passed(self, revision, passed, checks_json, findings, dry_run_rows_in, dry_run_rows_out, command_id):
        self.status = "qa_passed"
        self.current["checks_json"] = checks_json
        self._seen(command_id)

    @event("QaFailed")
    def _qa_failed(self, revision, passed, checks_json, findings, dry_run_rows_in, dry_run_rows_out, command_id):
        self.status = "qa_failed"
        if "findings" in self.current:
            self.current["previous_findings"] = list(self.current["findings"])
        self.current.update(checks_json=checks_json, findings=list(findings))
        self._seen(command_id)

    def reflect(self, revision: int, round: int, instructions: list, llm: Optional[dict], command_id: str) -> None:
        self._proposal("reflection", revision)
        if round != self.repair_round + 1:
            raise StageError(f"repair round {round} is out of order: the next one is {self.repair_round + 1}")
        if round > MAX_REPAIR_ROUNDS:
            raise RepairLimitError(f"at most {MAX_REPAIR_ROUNDS} repair rounds per revision")
        self._reflection_issued(revision=revision, round=round, instructions=instructions, llm=llm,
                                command_id=command_id)

    @event("ReflectionIssued")
    def _reflection_issued(self, revision, round, instructions, llm, command_id):
        self.status = "repairing"
        self.repair_round = round
        self.current["instructions"] = list(instructions)
        self._seen(command_id)

    def complete_draft(self, revision: int, quality_score: float, checks_passed: list, passed_qa: bool,
                       command_id: str) -> None:
        self._proposal("draft", revision)
        if passed_qa != (self.status == "qa_passed"):
            raise StageError("a draft's QA verdict must match the revision's last QA result")
        self._draft_completed(revision=revision, draft_version=len(self.drafts) + 1,
                              quality_score=quality_score, checks_passed=checks_passed, passed_qa=passed_qa,
                              command_id=command_id)

    @event("DraftCompleted")
    def _draft_completed(self, revision, draft_version, quality_score, checks_passed, passed_qa, command_id):
        self.status = "draft_ready" if passed_qa else "draft_failed"
        self.drafts.append({**self.current, "revision": revision, "draft_version": draft_version,
                            "quality_score": quality_score, "checks_passed": list(checks_passed),
                            "passed_qa": passed_qa})
        self._seen(command_id)

    def fail_drafting(self, revision: int, stage: str, reason: str, command_id: str) -> None:
        """An agent could not do its stage (e.g. it hit an error): drafting stops with the reason."""
        self.check_not_deleted()
        self.check_revision(revision)
        self.check_drafting(stage)
        self._drafting_failed(revision=revision, stage=stage, reason=reason or "an agent failed",
                              command_id=command_id)

    def expire_stage(self, revision: int, stage: str, timeout_s: float, now, command_id: str) -> None:
        """No agent answered within ``timeout_s``: drafting stops, so no pipeline waits forever."""
        self.check_not_deleted()
        self.check_revision(revision)
        waited = self.check_stage_overdue(stage, now, timeout_s)
        reason = (f"no answer from the {WAITS_FOR[stage]} within {timeout_s:g} s: the pipeline waited "
                  f"{waited:.0f} s in {stage}")
        self._drafting_failed(revision=revision, stage=stage, reason=reason, command_id=command_id)

    @event("DraftingFailed")
    def _drafting_failed(self, revision, stage, reason, command_id):
        self.status = "draft_failed"
        self.current["failure"] = reason
        self._seen(command_id)

    # -- user commands -----------------------------------------------------------------------------
    def revise(self, instructions: str, command_id: str, slot: Optional[str] = None) -> None:
        """New instructions, or (with ``slot``) the answer to the open clarification's question."""
        self.check_not_deleted()
        check_description(instructions)
        self.check_stage("revise")
        if slot is not None:
            self.check_answerable(slot)
        self._revision_requested(revision=self.revision + 1, instructions=instructions, slot=slot,
                                 command_id=command_id)

    def check_answerable(self, slot: str) -> None:
        if self.status != "needs_clarification":
            raise AnswerError(f"there is no open question to answer: the pipeline is {self.status}")
        if self.open_slots and slot not in self.open_slots:
            raise AnswerError(f"the open question asks for {', '.join(self.open_slots)}, not {slot}")

    @event("RevisionRequested")
    def _revision_requested(self, revision, instructions, slot, command_id):
        self.status = "revising"
        self.revision = revision
        self.repair_round = 0
        if slot is None:
            self.current = {"instructions": [instructions]}
        else:  # an answer keeps the instructions being answered; the planner reads it from `answers`
            self.answers = [a for a in self.answers if a["slot"] != slot] + [{"slot": slot, "text": instructions}]
            self.current = {"instructions": list(self.instructions), "answer": slot}
        self.open_slots = []
        self._seen(command_id)

    # -- lifecycle -----------------------------------------------------------------------------------
    def check_not_deleted(self) -> None:
        if self.lifecycle == "deleted":
            raise PipelineDeletedError("the pipeline was deleted")

    def _draft(self, version: int) -> dict:
        for d in self.drafts:
            if d["draft_version"] == version:
                return d
        raise DeployError(f"there is no draft version {version}; versions: "
                          f"{[d['draft_version'] for d in self.drafts] or 'none yet'}")

    def check_deployable(self, version: int) -> dict:
        draft = self._draft(version)
        if not draft.get("passed_qa"):
            raise DeployError(f"draft version {version} did not pass QA and cannot be deployed")
        return draft

    def deploy(self, version: Optional[int], command_id: str) -> None:
        self.check_not_deleted()
        if version is None:
            if not self.drafts:
                raise DeployError("there is no draft to deploy yet")
            version = self.drafts[-1]["draft_version"]
        draft = self.check_deployable(version)
        self._pipeline_deployed(version=version, previous_version=self.deployed_version,
                                artifacts_json=_artifacts_json(draft), command_id=command_id)

    @event("PipelineDeployed")
    def _pipeline_deployed(self, version, previous_version, artifacts_json, command_id):
        self.deployed_version = version
        self.deployed_history.append(version)
        if self.lifecycle == "draft":
            self.lifecycle = "deployed"
        self._seen(command_id)

    def rollback(self, version: int, command_id: str) -> None:
        self.check_not_deleted()
        if self.deployed_version is None:
            raise LifecycleError("nothing is deployed: there is nothing to roll back")
        if version not in self.deployed_history or version == self.deployed_version:
            raise DeployError(f"version {version} is not an earlier deployed version; deployed so far: "
                              f"{self.deployed_history}")
        draft = self.check_deployable(version)
        self._pipeline_rolled_back(version=version, from_version=self.deployed_version,
                                   artifacts_json=_artifacts_json(draft), command_id=command_id)

    @event("PipelineRolledBack")
    def _pipeline_rolled_back(self, version, from_version, artifacts_json, command_id):
        self.deployed_version = version
        self.deployed_history.append(version)
        self._seen(command_id)

    def pause(self, command_id: str) -> None:
        self.check_not_deleted()
        if self.lifecycle != "deployed":
            raise LifecycleError(f"only a deployed pipeline can be paused; it is {self.lifecycle}")
        self._pipeline_paused(command_id=command_id)

    @event("PipelinePaused")
    def _pipeline_paused(self, command_id):
        self.lifecycle = "paused"
        self._seen(command_id)

    def resume(self, command_id: str) -> None:
        self.check_not_deleted()
        if self.lifecycle != "paused":
            raise LifecycleError(f"only a paused pipeline can be resumed; it is {self.lifecycle}")
        self._pipeline_resumed(command_id=command_id)

    @event("PipelineResumed")
    def _pipeline_resumed(self, command_id):
        self.lifecycle = "deployed"
        self._seen(command_id)

    def delete(self, command_id: str) -> None:
        self.check_not_deleted()
        self._pipeline_deleted(command_id=command_id)

    @event("PipelineDeleted")
    def _pipeline_deleted(self, command_id):
        self.lifecycle = "deleted"
        self._seen(command_id)

    def trigger_run(self, run_id: str, trigger_kind: str, params_json: str, slot: Optional[str],
                    command_id: str) -> None:
        self.check_not_deleted()
        if self.lifecycle != "deployed":
            raise LifecycleError(f"runs need a deployed, unpaused pipeline; it is {self.lifecycle}")
        if run_id in self.runs:
            raise LifecycleError(f"run {run_id} was already requested")
        self._run_requested(run_id=run_id, version=self.deployed_version, trigger_kind=trigger_kind,
                            params_json=params_json, slot=slot, command_id=command_id)

    @event("RunRequested")
    def _run_requested(self, run_id, version, trigger_kind, params_json, slot, command_id):
        self.runs[run_id] = {"version": version, "trigger_kind": trigger_kind, "slot": slot}
        self._seen(command_id)


    def cancel_run(self, run_id: str, reason: str, command_id: str, run_status: Optional[str] = None) -> None:
        """``run_status``: the run's terminal status on runs.events.v1 if it has one (the executor's log;
        the aggregate reads it before deciding a cancellation)."""
        if run_id not in self.runs:
            raise RunNotFoundError(f"pipeline {self.id} has no run {run_id}")
        self.check_run_unfinished(run_id, run_status)
        if self.runs[run_id].get("cancel_requested"):
            raise LifecycleError(f"run {run_id} was already asked to stop")
        self._run_cancel_requested(run_id=run_id, reason=reason, command_id=command_id)

    @staticmethod
    def check_run_unfinished(run_id: str, run_status: Optional[str]) -> None:
        if run_status is not None:
            raise RunFinishedError(f"run {run_id} has already {run_status}: there is nothing to cancel")

    @event("RunCancelRequested")
    def _run_cancel_requested(self, run_id, reason, command_id):
        # Whether the run already finished is the executor's knowledge (runs.events.v1), not ours:
        # it answers a finished run's cancellation by doing nothing.
        self.runs[run_id] = {**self.runs[run_id], "cancel_requested": True}
        self._seen(command_id)


def _artifacts_json(draft: dict) -> str:
    import json

    return json.dumps(draft, sort_keys=True, default=str)
