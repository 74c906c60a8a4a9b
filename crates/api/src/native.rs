//! Native JSON API shapes: what Berth offers beyond AgentCore (sessions, logs, traffic, audit).
