"""Acceptance (issue 15, 2): strands-agents-evals' AgentCore evaluator against Berth.

A Strands agent runs in the test process (agents/strands_adot's scripted model: no network) with
strands-evals' in-memory telemetry; an `Experiment` of two cases is scored by the SDK's
`create_strands_evaluator("Builtin.Helpfulness")`, unmodified: it converts the in-memory spans to
ADOT documents and calls `Evaluate` through boto3, pointed at Berth by the endpoint variables only.
The judge is a local double speaking the OpenAI chat-completions API: it rates an answer that
carries the tool's result "Very Helpful" and the other one "Not Helpful At All".
"""

from __future__ import annotations

import http.server
import json
import sys
import threading
from pathlib import Path

import boto3
import pytest
from berth_harness import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY

AGENT_DIR = Path(__file__).parent / "agents" / "strands_adot"
PROMPTS: list = []


class _Judge(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", "0"))) or b"{}")
        prompt = json.dumps(body.get("messages", []))
        PROMPTS.append(prompt)
        good = "the tool said 5" in prompt
        verdict = {"explanation": "uses the tool's result" if good else "ignores the tool",
                   "label": "Very Helpful" if good else "Not Helpful At All"}
        data = json.dumps({
            "id": "chatcmpl-judge", "object": "chat.completion", "model": body.get("model"),
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": json.dumps(verdict)}}],
            "usage": {"prompt_tokens": 30, "completion_tokens": 6, "total_tokens": 36},
        }).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture(scope="module")
def server(module_server):
    judge = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Judge)
    threading.Thread(target=judge.serve_forever, daemon=True).start()
    srv = module_server(
        "strandsevals",
        args=("--eval-model-provider", "openai",
              "--eval-model-base-url", f"http://127.0.0.1:{judge.server_address[1]}/v1",
              "--eval-model", "judge-double"),
    )
    yield srv
    judge.shutdown()
    judge.server_close()


@pytest.fixture
def sdk_env(monkeypatch, server):
    monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_AGENTCORE", server.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)


def test_strands_evals_agentcore_evaluator_scores_through_berth(sdk_env):
    from bedrock_agentcore.evaluation import create_strands_evaluator
    from strands import Agent
    from strands_evals import Case, Experiment
    from strands_evals.telemetry import StrandsEvalsTelemetry

    sys.path.insert(0, str(AGENT_DIR))
    try:
        import agent as scripted  # agents/strands_adot/agent.py: its model and tools
    finally:
        sys.path.remove(str(AGENT_DIR))

    telemetry = StrandsEvalsTelemetry().setup_in_memory_exporter()

    def task(case):
        telemetry.in_memory_exporter.clear()
        agent = Agent(model=scripted.ScriptedModel(), tools=[scripted.add, scripted.broken],
                      callback_handler=None, name="scripted")
        answer = agent(case.input)
        return {"output": str(answer).strip(),
                "trajectory": list(telemetry.in_memory_exporter.get_finished_spans())}

    cases = [Case(input="add 2 and 3", expected_output="5"),
             Case(input="use the broken tool", expected_output="5")]
    evaluator = create_strands_evaluator("Builtin.Helpfulness", region=REGION, test_pass_score=0.7)
    report = Experiment(cases=cases, evaluators=[evaluator]).run_evaluations(task)
    [report] = report if isinstance(report, list) else [report]

    # "Very Helpful" is 5 of the 7-point scale's 6 steps.
    assert report.scores == [pytest.approx(5 / 6), pytest.approx(0.0)], report
    assert report.test_passes == [True, False], report
    assert PROMPTS, "the judge was never called"
    # The judge saw the agent's real answers, read from the converted spans.
    assert any("the tool said 5" in p for p in PROMPTS)
    assert any("the broken tool broke" in p or "Error" in p for p in PROMPTS)
