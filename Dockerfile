FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md constraints.txt ./
COPY recert ./recert
COPY connectors ./connectors
COPY jobs ./jobs
COPY emails ./emails
COPY sandbox ./sandbox
RUN pip install --no-cache-dir -c constraints.txt .
USER nobody
ENTRYPOINT ["recert"]
