"""The gallery component on its own, with a store of plain items: new images on page 1 go on top without
a rebuild, the oldest drop off, and the page is rebuilt where its shape changes."""
from __future__ import annotations

from datetime import datetime, timezone

from nicegui import ui
from nicegui.testing.user import User

from app.protocol import (
    GalleryItem,
    GalleryPage,
    GenerationComplete,
    GenerationMetadata,
)
from components.gallery import Gallery


class ListStore:
    """Gallery rows, newest last (the store's own order is newest first)."""

    def __init__(self) -> None:
        self.items: list[GalleryItem] = []

    def add_job(self, session_id: str, count: int = 1) -> GenerationComplete:
        metadata = GenerationMetadata(
            prompt=f"prompt of {session_id}", negative_prompt="", seed=1, num_inference_steps=2, guidance_scale=7.5,
            model="tiny", width=64, height=64, created_at=datetime.now(timezone.utc), duration_seconds=0.1,
        )
        names = [f"{session_id}-{index}.png" for index in range(count)]
        # within a job the store lists index 0 first; jobs newest first
        self.items += [GalleryItem(name=name, url=f"/images/{name}", path=name, session_id=session_id, index=index,
                                   metadata=metadata) for index, name in reversed(list(enumerate(names)))]
        return GenerationComplete(session_id=session_id, image_paths=names, image_urls=[f"/images/{n}" for n in names],
                                  metadata=metadata)

    def page(self, offset: int, limit: int) -> GalleryPage:
        newest_first = list(reversed(self.items))
        return GalleryPage(items=newest_first[offset: offset + limit], total=len(newest_first), offset=offset, limit=limit)


def shown(gallery: Gallery) -> list[str]:
    assert gallery.grid is not None
    return [thumbnail.source for thumbnail in gallery.grid]


async def gallery_of_four_jobs(user: User) -> tuple[ListStore, Gallery]:
    """A gallery of 3 per page on the studio's page, over a store of four one-image jobs."""
    await user.open("/")
    store = ListStore()
    for number in range(4):
        store.add_job(f"job{number}")
    with user.client, ui.column():
        gallery = Gallery(store.page, on_open=lambda url, metadata: None, page_size=3)
    return store, gallery


async def test_new_images_go_on_top_and_the_oldest_drop_off(user: User) -> None:
    store, gallery = await gallery_of_four_jobs(user)
    assert shown(gallery) == ["/images/job3-0.png", "/images/job2-0.png", "/images/job1-0.png"]
    kept = list(gallery.grid)[:2]

    with user.client:
        gallery.on_new_images(store.add_job("job4"))  # 5 images: still 2 pages
    assert shown(gallery) == ["/images/job4-0.png", "/images/job3-0.png", "/images/job2-0.png"]
    assert list(gallery.grid)[1:] == kept, "page 1 was rebuilt instead of updated"
    assert gallery.count_label.text == "5 images"

    with user.client:
        gallery.on_new_images(store.add_job("job5", count=2))  # 7 images: a third page, so a rebuild
    await user.should_see(marker="job5-1.png")  # the rebuild runs as a task of its own
    assert shown(gallery) == ["/images/job5-0.png", "/images/job5-1.png", "/images/job4-0.png"]
    assert gallery.pages == 3 and gallery.count_label.text == "7 images"

    with user.client:
        gallery.on_new_images(store.add_job("job5"))  # the same images reported again: shown once
    assert shown(gallery).count("/images/job5-0.png") == 1


async def test_on_another_page_new_images_are_counted_not_shown(user: User) -> None:
    store, gallery = await gallery_of_four_jobs(user)
    with user.client:
        gallery.show_page(2)
    await user.should_not_see(marker="job3-0.png")
    assert shown(gallery) == ["/images/job0-0.png"]
    with user.client:
        gallery.on_new_images(store.add_job("job4"))
    assert gallery.unseen == 1
    await user.should_see(marker="gallery-new")  # the rebuild runs as a task of its own
    assert shown(gallery) == ["/images/job1-0.png", "/images/job0-0.png"]  # page 2 of the store as it is now
