"""What each kind of simulated device reports at a moment: believable, deterministic signals."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime

from devices import DEVICE_KINDS, Device


def _hour(t: float) -> float:
    moment = datetime.fromtimestamp(t, UTC)
    return moment.hour + moment.minute / 60 + 1.0  # roughly Dutch winter time


def _rush(t: float) -> float:
    """0..1, peaking at 08:00 and 17:00 local time."""
    h = _hour(t)
    return max(math.exp(-((h - 8) ** 2) / 2), math.exp(-((h - 17) ** 2) / 3))


def _is_dark(t: float) -> bool:
    h = _hour(t) % 24
    return h < 8.0 or h >= 16.8  # late November in the Netherlands


class DeviceState:
    """The running state of one simulated device: counters and slowly varying levels."""

    def __init__(self, device: Device, seed: int) -> None:
        self.device = device
        self.rng = random.Random(f"{seed}:{device.device_id}")
        self.seq = 0
        self.totals: dict[str, float] = {}
        self.fill = self.rng.uniform(0, 60)
        self.occupied = float(self.rng.random() < 0.6)
        self.last_t: float | None = None

    def reading(self, t: float) -> dict[str, float]:
        """The metrics of the reading at time `t` (epoch seconds)."""
        rng = self.rng
        dt = 0.0 if self.last_t is None else max(0.0, t - self.last_t)
        self.last_t = t
        kind = self.device.kind
        rush = _rush(t)
        if kind == "air_quality":
            return {
                "pm25": round(max(0.5, 6 + 6 * rush + rng.gauss(0, 1.5)), 1),
                "pm10": round(max(1.0, 14 + 9 * rush + rng.gauss(0, 3)), 1),
                "no2": round(max(1.0, 18 + 30 * rush + rng.gauss(0, 4)), 1),
                "temperature": round(
                    6 + 3 * math.sin((_hour(t) - 9) / 24 * 2 * math.pi) + rng.gauss(0, 0.3), 2
                ),
                "relative_humidity": round(min(100, max(30, 82 + rng.gauss(0, 4))), 1),
            }
        if kind == "noise":
            laeq = 48 + 18 * rush + rng.gauss(0, 2)
            return {
                "laeq": round(laeq, 1),
                "lamax": round(laeq + 12 + abs(rng.gauss(0, 4)), 1),
                "la10": round(laeq + 3, 1),
                "la90": round(laeq - 8, 1),
            }
        if kind == "lamppost":
            dark = _is_dark(t)
            h = _hour(t) % 24
            dim = 0.0 if not dark else (50.0 if 0 <= h < 6 else 100.0)
            power = round(dim / 100 * 58 + (0.6 if dark else 0.3) + rng.gauss(0, 0.2), 1)
            power = max(0.0, power)
            energy = self.totals.get("active_energy", rng.uniform(100, 4000)) + power * dt / 3.6e6
            hours = self.totals.get("operating_hours", rng.uniform(1000, 30000))
            hours += (dt / 3600) if dark else 0.0
            self.totals["active_energy"], self.totals["operating_hours"] = energy, hours
            return {
                "dim_level": dim,
                "active_power": power,
                "active_energy": round(energy, 4),
                "operating_hours": round(hours, 4),
                "lamp_failure": float(rng.random() < 0.002),
                "supply_voltage": round(230 + rng.gauss(0, 2), 1),
            }
        if kind == "traffic_counter":
            out = {}
            for name, peak in (("pedestrians", 40), ("bicycles", 60), ("cars", 30)):
                total = self.totals.get(name, 0.0)
                mean = peak * (0.1 + rush) * dt / 60
                total += max(0, round(rng.gauss(mean, math.sqrt(mean) if mean > 0 else 0.0)))
                self.totals[name] = total
                out[name] = total
            return out
        if kind == "parking":
            if rng.random() < 0.1:
                self.occupied = 1.0 - self.occupied
            return {"occupied": self.occupied}
        if kind == "waste_bin":
            self.fill = self.fill + rng.uniform(0, 1.5)
            if self.fill >= 95 or rng.random() < 0.005:
                self.fill = rng.uniform(0, 5)
            return {"fill_level": round(min(self.fill, 100.0), 1)}
        if kind == "weather":
            rain = self.totals.get("rain", 0.0) + (
                rng.uniform(0, 0.4) if rng.random() < 0.2 else 0.0
            )
            self.totals["rain"] = rain
            return {
                "temperature": round(6 + rng.gauss(0, 0.5), 2),
                "relative_humidity": round(min(100, max(30, 84 + rng.gauss(0, 3))), 1),
                "wind_speed": round(max(0.0, 5 + rng.gauss(0, 1.5)), 1),
                "wind_direction": round((225 + rng.gauss(0, 25)) % 360, 1),
                "rain": round(rain, 2),
            }
        if kind == "water_level":
            return {
                "level": round(
                    -0.4 + 0.1 * math.sin(t / 44712 * 2 * math.pi) + rng.gauss(0, 0.01), 3
                )
            }
        metrics = DEVICE_KINDS[kind].metrics
        return {m.name: m.minimum for m in metrics}
