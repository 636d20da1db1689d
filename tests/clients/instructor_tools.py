"""Run inside the instructor virtual environment: instructor in Mode.TOOLS against the URL given.

Prints the extracted record as JSON; instructor itself validates the tool call against the model."""

import json
import sys

import instructor
import pydantic
from openai import OpenAI


class City(pydantic.BaseModel):
    name: str
    country: str


client = instructor.from_openai(
    OpenAI(base_url=sys.argv[1], api_key="unused", max_retries=0), mode=instructor.Mode.TOOLS
)
city = client.chat.completions.create(
    model="smollm2",
    response_model=City,
    max_retries=2,
    temperature=0,
    max_tokens=120,
    messages=[{"role": "user", "content": "Which city is the Eiffel Tower in?"}],
)
print(json.dumps({"type": type(city).__name__, **city.model_dump()}))
