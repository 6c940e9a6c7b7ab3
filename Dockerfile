FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY recert ./recert
COPY connectors ./connectors
COPY jobs ./jobs
COPY emails ./emails
COPY sandbox ./sandbox
RUN pip install --no-cache-dir .
USER nobody
ENTRYPOINT ["recert"]
