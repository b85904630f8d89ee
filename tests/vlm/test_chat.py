"""Chat formatting follows MMAD's protocol text, 0-shot and 1-shot."""

from emit_iad.vlm.chat import PromptConfig, build_messages, collate, format_question

RECORD = {
    "question": "Is there any defect in the object?", "options": ["Yes.", "No."],
    "query_image": "q.png", "similar_templates": ["s1.png", "s2.png"], "random_templates": ["r.png"],
    "query_text": None, "type": "Anomaly Detection", "dataset": "d", "object": "o",
}  # fmt: skip
SYSTEM = (
    "You are an industrial inspector who checks products by images. You should judge whether "
    "there is a defect in the query image and answer the questions about it.\n"
    "Answer with the option's letter from the given choices directly."
)


def _texts(messages):
    return [p.get("text", "<image>") for p in messages[1]["content"]]


def test_one_shot_protocol():
    messages, images = build_messages(RECORD, PromptConfig(k_shot=1))
    assert messages[0] == {"role": "system", "content": SYSTEM}
    assert _texts(messages) == [
        "Following is/are 1 image of normal sample, which can be used as a template to compare "
        "the image being queried.\n",
        "<image>", "Following is the query image:\n", "<image>",
        "Is there any defect in the object?\nA. Yes.\nB. No.\n",
    ]  # fmt: skip
    assert images == ["s1.png", "q.png"]


def test_zero_shot_random_templates_knowledge_and_think_format():
    messages, images = build_messages(RECORD, PromptConfig(k_shot=0))
    assert _texts(messages)[0] == "Following is the query image:\n" and images == ["q.png"]
    messages, images = build_messages(
        RECORD, PromptConfig(k_shot=2, template_source="random", answer_format="think",
                             domain_knowledge=True), knowledge="Cracks are dark lines.")  # fmt: skip
    texts = _texts(messages)
    assert texts[0].startswith("Following is the domain knowledge which contains some type of "
                               "defect and the normal object characteristics: \n Cracks")  # fmt: skip
    assert images == ["r.png", "q.png"]  # only one random template exists
    assert "<think>" in messages[0]["content"] and "<answer>" in messages[0]["content"]


def test_text_query_and_option_format():
    messages, _ = build_messages({**RECORD, "query_text": "A washer with a rust patch."},
                                 PromptConfig(k_shot=0))  # fmt: skip
    assert (
        "Following is the description of the query object: A washer with a rust patch.\n"
        in _texts(messages)
    )
    assert format_question("Q?", ["a.", "b.", "c.", "d."]) == "Q?\nA. a.\nB. b.\nC. c.\nD. d.\n"


def test_batches_are_left_padded(tiny_vlm, records):
    batch = collate(records[:3], tiny_vlm.processor, PromptConfig(k_shot=1))
    mask = batch.inputs["attention_mask"]
    assert (mask[:, -1] == 1).all()  # every prompt ends at the right edge
    assert (mask[:, 0] == 0).any()
    assert batch.fewshot_query is None  # no placeholders asked for


def test_the_image_cache_follows_the_file_not_the_path_as_written(tmp_path, monkeypatch):
    """The same relative path in two projects (one process: a notebook, the tests) names two
    files; a file written again is read again. The cache once returned the first project's
    image for both, which shifted a README figure by 0.013 AUROC in the full test run."""
    import os

    from PIL import Image

    from emit_iad.vlm.chat import load_image

    for name, colour in (("a", (255, 0, 0)), ("b", (0, 0, 255))):
        (tmp_path / name / "data").mkdir(parents=True)
        Image.new("RGB", (4, 4), colour).save(tmp_path / name / "data/img.png")
    monkeypatch.chdir(tmp_path / "a")
    assert load_image("data/img.png").getpixel((0, 0)) == (255, 0, 0)
    monkeypatch.chdir(tmp_path / "b")
    assert load_image("data/img.png").getpixel((0, 0)) == (0, 0, 255)
    Image.new("RGB", (4, 4), (0, 255, 0)).save(tmp_path / "b/data/img.png")
    os.utime(tmp_path / "b/data/img.png", ns=(1, 10**18))  # a new modification time
    assert load_image("data/img.png").getpixel((0, 0)) == (0, 255, 0)


def test_the_image_cache_is_bounded_by_pixel_bytes(tmp_path, monkeypatch):
    """Every image of a small dataset stays decoded across epochs (a repeat is the same object,
    not a new decode); past the byte bound the least recently used image goes first."""
    from PIL import Image

    from emit_iad.vlm import chat

    monkeypatch.setattr(
        chat, "_IMAGES", chat.LRUCache(3 * 10 * 10 * 3, getsizeof=chat._IMAGES.getsizeof)
    )
    monkeypatch.setattr(
        chat, "_load_image", chat.cached(chat._IMAGES)(chat._load_image.__wrapped__)
    )
    for i in range(4):
        Image.new("RGB", (10, 10), (i, 0, 0)).save(tmp_path / f"{i}.png")
    first = [chat.load_image(str(tmp_path / f"{i}.png")) for i in range(3)]
    assert [chat.load_image(str(tmp_path / f"{i}.png")) is first[i] for i in range(3)] == [True] * 3
    assert chat._IMAGES.currsize == 3 * 300
    chat.load_image(str(tmp_path / "3.png"))  # over the bound: 0.png, least recently used, goes
    assert chat._IMAGES.currsize == 3 * 300
    assert chat.load_image(str(tmp_path / "1.png")) is first[1]
    assert chat.load_image(str(tmp_path / "0.png")) is not first[0]
    assert chat.load_image(str(tmp_path / "0.png")).getpixel((0, 0)) == (0, 0, 0)
